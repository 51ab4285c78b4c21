// What a federation router refuses, so that it refuses what the unified gateway refuses: the
// gateway's limits (the same LIGHTHOUSE_* variables, the same defaults: api/settings.py), the
// validation rules that count as the gateway counts, and the error policy. Hive Gateway
// (gateway.config.mjs) and Apollo Gateway (apollo-gateway.mjs) both use it; each keeps its own
// built-in options where it has them (token limit, introspection, suggestions, masking).
import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import { GraphQLError, Kind } from "graphql";

// name → [the gateway's default, smallest, largest] (GraphSettings and HttpSettings).
const LIMITS = {
  maxQueryDepth: ["LIGHTHOUSE_MAX_QUERY_DEPTH", 10, 2, 50],
  maxAliases: ["LIGHTHOUSE_MAX_ALIASES", 30, 1, 1000],
  maxTokens: ["LIGHTHOUSE_MAX_TOKENS", 2000, 50, 100_000],
  maxDocumentBytes: ["LIGHTHOUSE_MAX_DOCUMENT_BYTES", 64 * 1024, 256, 1024 * 1024],
  maxBodyBytes: ["LIGHTHOUSE_MAX_BODY_BYTES", 1024 * 1024, 1024, 512 * 1024 * 1024],
};

/** The limits, from the environment as the gateway reads them; a bad value stops start-up
 * with a message that names the variable. */
export function readLimits(env = process.env) {
  const limits = {};
  for (const [name, [variable, fallback, least, most]] of Object.entries(LIMITS)) {
    const text = env[variable];
    const value = text === undefined || text === "" ? fallback : Number(text);
    if (!Number.isInteger(value) || value < least || value > most) {
      throw new Error(`${variable} must be a whole number from ${least} to ${most}, not ${text}`);
    }
    limits[name] = value;
  }
  return limits;
}

// Variables that make Hive Gateway or Apollo Server report usage, traces or schemas to a
// vendor's cloud, or fetch the supergraph from one. The city's routers call nothing outside.
const PHONING_HOME = [
  "APOLLO_KEY", "APOLLO_GRAPH_REF", "APOLLO_SCHEMA_CONFIG_DELIVERY_ENDPOINT",
  "HIVE_REGISTRY_TOKEN", "HIVE_USAGE_TARGET", "HIVE_USAGE_ACCESS_TOKEN", "HIVE_TARGET",
  "HIVE_ACCESS_TOKEN", "HIVE_TRACE_ACCESS_TOKEN", "HIVE_TRACE_ENDPOINT", "HIVE_CDN_ENDPOINT",
  "HIVE_CDN_KEY", "OPENTELEMETRY", "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/** Stops start-up when a variable would make the router call a vendor's service. */
export function refuseTelemetry(env = process.env) {
  const set = PHONING_HOME.filter((name) => env[name]);
  if (set.length > 0) {
    throw new Error(
      `${set.join(", ")}: the router reports to no vendor and fetches nothing from one; unset it`,
    );
  }
}

// --- validation rules ---------------------------------------------------------------------------
// Apollo Server has no depth or alias limit, and Hive Gateway's maxDepth (graphql-armor's) counts
// differently from the gateway (the top-level field as 1, each fragment as a level): these two
// count as Strawberry's QueryDepthLimiter and MaxAliasesLimiter do, so that the router, the
// gateway and its subgraphs refuse the same documents. Fragments are measured once each, so a
// document that spreads fragments into fragments costs the rule its length, not its expansion.

function validationError(message, nodes) {
  return new GraphQLError(message, { nodes, extensions: { code: "GRAPHQL_VALIDATION_FAILED" } });
}

function fragmentsOf(context) {
  const fragments = new Map();
  for (const definition of context.getDocument().definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) {
      fragments.set(definition.name.value, definition);
    }
  }
  return fragments;
}

/** Measures selection sets, each fragment once (a fragment in a cycle counts as nothing: the
 * document is refused for the cycle anyway). */
function measure(fragments, ofField, combine) {
  const known = new Map();
  const of = (selectionSet) => {
    let total = 0;
    for (const selection of selectionSet.selections) {
      let value = 0;
      if (selection.kind === Kind.FIELD) {
        value = ofField(selection, of);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        value = of(selection.selectionSet);
      } else {
        const name = selection.name.value;
        if (!known.has(name)) {
          known.set(name, 0);
          const fragment = fragments.get(name);
          if (fragment) known.set(name, of(fragment.selectionSet));
        }
        value = known.get(name);
      }
      total = combine(total, value);
    }
    return total;
  };
  return of;
}

/** Documents deeper than ``maxDepth`` levels below their top-level fields are refused. */
export function depthLimitRule(maxDepth) {
  return (context) => {
    const depth = measure(
      fragmentsOf(context),
      (field, of) =>
        field.selectionSet && !field.name.value.startsWith("__") ? 1 + of(field.selectionSet) : 0,
      Math.max,
    );
    return {
      OperationDefinition(operation) {
        if (depth(operation.selectionSet) > maxDepth) {
          const name = operation.name?.value ?? "anonymous";
          const message = `'${name}' exceeds maximum operation depth of ${maxDepth}`;
          context.reportError(validationError(message, [operation]));
        }
      },
    };
  };
}

/** Documents with more than ``maxAliases`` aliased fields (fragments counted where spread) are
 * refused. */
export function aliasLimitRule(maxAliases) {
  return (context) => {
    const aliases = measure(
      fragmentsOf(context),
      (field, of) => (field.alias ? 1 : 0) + (field.selectionSet ? of(field.selectionSet) : 0),
      (a, b) => Math.min(a + b, Number.MAX_SAFE_INTEGER),
    );
    let total = 0;
    return {
      OperationDefinition(operation) {
        total += aliases(operation.selectionSet);
      },
      Document: {
        leave() {
          if (total > maxAliases) {
            context.reportError(validationError(`${total} aliases found. Allowed: ${maxAliases}`));
          }
        },
      },
    };
  };
}

export const SUBSCRIPTIONS_NOT_ROUTED =
  "subscriptions are not served through the federation router: subscribe at the gateway's " +
  "/graphql over WebSocket (graphql-transport-ws)";

/** Subscriptions are the gateway's: the router has none of its WebSocket bounds. */
export function noSubscriptionsRule(context) {
  return {
    OperationDefinition(operation) {
      if (operation.operation === "subscription") {
        context.reportError(
          new GraphQLError(SUBSCRIPTIONS_NOT_ROUTED, {
            nodes: [operation],
            extensions: { code: "SUBSCRIPTIONS_NOT_ROUTED" },
          }),
        );
      }
    },
  };
}

// --- the error policy ---------------------------------------------------------------------------
// An error a subgraph answered is public as the subgraph gave it (the subgraph has masked what it
// must); the router's own refusals of a request (it does not parse, is invalid, too large…) are
// public; anything else the router met (a subgraph it cannot reach, an answer that is not
// GraphQL, its own failures) is logged with the request id and answered with the id only.

const PUBLIC_EXTENSIONS = ["code", "field", "requestId", "retryAfter"];
// Codes the routers give their own failures (a subgraph that cannot be reached, an answer that
// is not GraphQL, a subgraph error that carried no code).
const ROUTER_FAILURES = new Set([
  "INTERNAL_SERVER_ERROR", "DOWNSTREAM_SERVICE_ERROR", "SUBREQUEST_HTTP_ERROR",
  "RESPONSE_VALIDATION_FAILED",
]);

const requestIds = new AsyncLocalStorage();
const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{8,128}$/;

/** The caller's X-Request-ID when it is one the gateway would take, else a new one. */
export function requestIdFor(header) {
  return header && VALID_REQUEST_ID.test(header) ? header : randomUUID().replaceAll("-", "");
}

/** Runs ``work`` as the request ``requestId`` (masked errors name it). */
export const runAsRequest = (requestId, work) => requestIds.run(requestId, work);
/** Makes the rest of this request's asynchronous work run as ``requestId``. */
export const enterRequest = (requestId) => requestIds.enterWith(requestId);
export const currentRequestId = () => requestIds.getStore() ?? "unknown";

/** ``extensions`` cut to what a caller may read. */
export function publicExtensions(extensions = {}) {
  const kept = {};
  for (const key of PUBLIC_EXTENSIONS) {
    if (extensions[key] !== undefined) kept[key] = extensions[key];
  }
  return kept;
}

/** Whether an error came from a subgraph's answer (``serviceName``, which both routers set on
 * a subgraph's errors) with the subgraph's own code. */
export function answeredBySubgraph(extensions = {}) {
  return (
    typeof extensions.serviceName === "string" &&
    typeof extensions.code === "string" &&
    !ROUTER_FAILURES.has(extensions.code)
  );
}

/** What the caller gets instead of an unexpected error; the error itself goes to the log. */
export function maskedError(error, path) {
  const requestId = currentRequestId();
  process.stderr.write(
    `${JSON.stringify({
      event: "router.unexpected_error",
      requestId,
      path,
      error: String(error?.stack ?? error),
      cause: error?.originalError
        ? String(error.originalError.stack ?? error.originalError)
        : undefined,
    })}\n`,
  );
  return {
    message: `internal error; quote request id ${requestId} when you report it`,
    path,
    extensions: { code: "INTERNAL_ERROR", requestId },
  };
}

/** A refusal of the request before it ran, in the gateway's shape. */
export function refusalBody(message, code, requestId) {
  return JSON.stringify({ errors: [{ message, extensions: { code, requestId } }] });
}

/** The HTTP status and headers of an answer that is only a subgraph's refusal of the caller
 * (a bad token, its rate limit): the gateway's own, rather than 200. */
export function refusalHead(data, errors) {
  if (data != null || !errors?.length) return null;
  const codes = new Set(errors.map((error) => error.extensions?.code));
  if (codes.size !== 1) return null;
  if (codes.has("UNAUTHENTICATED")) {
    const challenge = 'Bearer realm="lighthouse", error="invalid_token"';
    return { status: 401, headers: { "WWW-Authenticate": challenge } };
  }
  if (codes.has("RATE_LIMITED")) {
    const retryAfter = Number(errors[0].extensions.retryAfter);
    const headers = Number.isInteger(retryAfter) ? { "Retry-After": String(retryAfter) } : {};
    return { status: 429, headers };
  }
  return null;
}
