// Trusted documents at the router: the persisted-document manifests the frontends registered with
// the gateway (`lighthouse documents register`), read from LIGHTHOUSE_ROUTER_DOCUMENTS (their
// paths, comma-separated). A request names a document as the gateway takes it: `documentId`
// (top level or in `extensions`), or Apollo's persisted-query hash. With
// LIGHTHOUSE_TRUSTED_DOCUMENTS_ONLY=true (the gateway's variable) the router runs those documents
// only, by id or as their exact text, as the gateway does.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const TRUE = new Set(["1", "true", "yes", "on"]);
const FALSE = new Set(["", "0", "false", "no", "off"]);
const HEX64 = /^[0-9a-f]{64}$/;

export const sha256 = (text) => createHash("sha256").update(text, "utf8").digest("hex");

export const TRUSTED_DOCUMENT_REQUIRED =
  "this router runs registered documents only: register the operation " +
  "(lighthouse documents register), add its manifest to LIGHTHOUSE_ROUTER_DOCUMENTS and send " +
  "its documentId";

function flag(env, variable) {
  const text = (env[variable] ?? "").trim().toLowerCase();
  if (TRUE.has(text)) return true;
  if (FALSE.has(text)) return false;
  throw new Error(`${variable} must be true or false, not ${env[variable]}`);
}

function readManifest(path) {
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new Error(
      `LIGHTHOUSE_ROUTER_DOCUMENTS: ${path} cannot be read as a manifest: ${error.message}`,
    );
  }
  const entries = manifest && typeof manifest === "object" && !Array.isArray(manifest)
    ? Object.entries(manifest)
    : [];
  if (entries.length === 0 || !entries.every(([, text]) => typeof text === "string")) {
    throw new Error(
      `LIGHTHOUSE_ROUTER_DOCUMENTS: ${path} is not a JSON object of ids to document texts`,
    );
  }
  return entries;
}

/** The documents the router knows, or null when it is given none (and may run any). */
export function readTrustedDocuments(env = process.env) {
  const only = flag(env, "LIGHTHOUSE_TRUSTED_DOCUMENTS_ONLY");
  const paths = (env.LIGHTHOUSE_ROUTER_DOCUMENTS ?? "")
    .split(",")
    .map((path) => path.trim())
    .filter(Boolean);
  if (paths.length === 0) {
    if (only) {
      throw new Error(
        "LIGHTHOUSE_TRUSTED_DOCUMENTS_ONLY=true needs LIGHTHOUSE_ROUTER_DOCUMENTS: the manifests " +
          "of the registered documents the router may run",
      );
    }
    return null;
  }
  const byId = new Map();
  const byHash = new Map();
  for (const path of paths) {
    for (const [id, text] of readManifest(path)) {
      if (byId.has(id) && byId.get(id) !== text) {
        throw new Error(`LIGHTHOUSE_ROUTER_DOCUMENTS: ${id} names two different documents`);
      }
      byId.set(id, text);
      byHash.set(sha256(text), text);
    }
  }
  return {
    only,
    count: byId.size,
    /** The text a request names, or null (an unknown id). */
    text(named) {
      const text = byId.get(named);
      if (text !== undefined) return text;
      const digest = named.startsWith("sha256:") ? named.slice(7) : named;
      return HEX64.test(digest) ? (byHash.get(digest) ?? null) : null;
    },
    /** Whether ``text`` is a registered document. */
    has: (text) => byHash.has(sha256(text)),
  };
}

/** The document a request names (its `documentId`, or the persisted-query hash as
 * `sha256:<hex>`); undefined when it names none; a string that is not usable as one is refused. */
export function namedDocument(params) {
  const named = params?.documentId ?? params?.extensions?.documentId;
  if (named !== undefined && named !== null) {
    if (typeof named !== "string" || named === "") {
      throw new TypeError("documentId must be a non-empty string");
    }
    return named;
  }
  const persisted = params?.extensions?.persistedQuery;
  if (persisted && typeof persisted === "object") {
    if (persisted.version !== 1 || typeof persisted.sha256Hash !== "string") {
      throw new TypeError("persistedQuery takes version 1 and a sha256Hash");
    }
    return `sha256:${persisted.sha256Hash.toLowerCase()}`;
  }
  return undefined;
}

/** The request's text once its named document is looked up: ``{ query }`` to run, or
 * ``{ status, code, message }`` to refuse it with, as the gateway would. */
export function resolveDocument(documents, params) {
  let named;
  try {
    named = namedDocument(params);
  } catch (error) {
    return { status: 400, code: "BAD_REQUEST", message: error.message };
  }
  let query = params?.query;
  if (named !== undefined && (query === undefined || query === null)) {
    query = documents.text(named);
    if (query === null) {
      return { status: 400, code: "PERSISTED_QUERY_NOT_FOUND", message: "PersistedQueryNotFound" };
    }
    return { query };
  }
  if (typeof query === "string") {
    if (named?.startsWith("sha256:") && sha256(query) !== named.slice(7)) {
      const message = "the document's SHA-256 is not the one named";
      return { status: 400, code: "BAD_REQUEST", message };
    }
    if (documents.only && !documents.has(query)) {
      return { status: 400, code: "TRUSTED_DOCUMENT_REQUIRED", message: TRUSTED_DOCUMENT_REQUIRED };
    }
  }
  return { query };
}
