/**
 * What the model manager reports: how a model was made ready, the loaded and downloaded models,
 * which mechanism manages models, the status of the server and `lms`; and the client calls it
 * needs. Types only.
 */
import type { LmStudioClient } from "./lmstudio.ts";
import type { LmsLocation } from "./lms_locate.ts";

/** How `ModelManager.ensureLoaded` made sure a model is ready. */
export interface EnsureResult {
  /** The name to send in requests (the loaded identifier when the request named it loosely). */
  model: string;
  via: "already-loaded" | "lms" | "rest" | "jit";
  waitedMs: number;
  note?: string;
}

/** A loaded model as `ModelManager.currentModels` reports it. */
export interface CurrentModel {
  id: string;
  type: string;
  status?: string;
  contextLength?: number;
}

/** A downloaded model as `ModelManager.downloadedModels` reports it. */
export interface DownloadedSummary {
  id: string;
  type: string;
  loaded?: boolean;
  displayName?: string;
  sizeBytes?: number;
  maxContextLength?: number;
  vision?: boolean;
  toolUse?: boolean;
}

/** Which mechanism manages models for the configured server. */
export type Management = "lms" | "rest" | "jit";

/** The client calls the manager uses. */
export type ModelClient = Pick<
  LmStudioClient,
  "baseUrl" | "listModels" | "loadModel" | "unloadModel" | "health"
>;

/** What `ModelManager.status` reports. */
export interface ServerStatusReport {
  baseUrl: string;
  reachable: boolean;
  latencyMs: number;
  modelCount?: number;
  error?: string;
  lms: {
    installed: boolean;
    path?: string;
    foundVia?: LmsLocation["via"];
    server?: { running: boolean; port?: number };
    error?: string;
  };
  management: Management;
  managementReason: string;
  ttlSeconds: number;
}
