// A second federation router: @apollo/gateway inside @apollo/server, from a supergraph SDL.
//   node apollo-gateway.mjs SUPERGRAPH_FILE PORT
// Like the Hive Gateway configuration, it forwards the caller's bearer token to the subgraphs and
// is trusted with nothing; and it refuses what the unified gateway refuses, before planning
// (hardening.mjs): Apollo Server's own options where it has them (introspection, suggestions,
// stack traces, the token limit, CSRF), the depth, alias and subscription rules it lacks, and an
// HTTP front of its own for what `startStandaloneServer` fixes (a 50 MB body limit): the
// gateway's body and document sizes, its request ids and its trusted documents.
import http from "node:http";
import { readFileSync } from "node:fs";
import { ApolloServer, HeaderMap } from "@apollo/server";
import {
  ApolloServerPluginLandingPageDisabled,
  ApolloServerPluginSchemaReportingDisabled,
  ApolloServerPluginUsageReportingDisabled,
} from "@apollo/server/plugin/disabled";
import { ApolloGateway, RemoteGraphQLDataSource } from "@apollo/gateway";
import { GraphQLError } from "graphql";
import {
  aliasLimitRule,
  answeredBySubgraph,
  depthLimitRule,
  maskedError,
  noSubscriptionsRule,
  publicExtensions,
  readLimits,
  refusalBody,
  refusalHead,
  refuseTelemetry,
  requestIdFor,
  runAsRequest,
} from "./hardening.mjs";
import { readTrustedDocuments, resolveDocument } from "./trusted-documents.mjs";

const [file, port] = process.argv.slice(2);
if (!file || !port) {
  process.stderr.write("usage: node apollo-gateway.mjs SUPERGRAPH_FILE PORT\n");
  process.exit(2);
}
refuseTelemetry();
const limits = readLimits();
const documents = readTrustedDocuments();
const JSON_TYPES = new Set(["application/json", "application/graphql-response+json"]);
// The router's own refusals of a request (Apollo Server's codes for them, and ours).
const REFUSALS = new Set([
  "GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT", "BAD_REQUEST",
  "PERSISTED_QUERY_NOT_FOUND", "PERSISTED_QUERY_NOT_SUPPORTED", "OPERATION_RESOLUTION_FAILURE",
  "SUBSCRIPTIONS_NOT_ROUTED",
]);

/** A subgraph refused the request over HTTP (its 401 for a bad token, its 429, its 503): the
 * caller gets the subgraph's coded error and status, not the router's view of the exchange. */
class SubgraphSource extends RemoteGraphQLDataSource {
  constructor(name, url) {
    super({ url });
    this.name = name;
  }

  willSendRequest({ request, context }) {
    if (context.authorization) request.http.headers.set("authorization", context.authorization);
    if (context.requestId) request.http.headers.set("x-request-id", context.requestId);
  }

  async errorFromResponse(response) {
    const body = await this.parseBody(response).catch(() => null);
    const first = Array.isArray(body?.errors) ? body.errors[0] : undefined;
    const code = first?.extensions?.code;
    if (typeof code !== "string" || typeof first.message !== "string") {
      // Not a GraphQL answer: what it says is the subgraph's business (masked, logged).
      const said = JSON.stringify(body);
      return new Error(`subgraph ${this.name} answered ${response.status}: ${said}`);
    }
    const headers = new HeaderMap();
    for (const name of ["retry-after", "www-authenticate"]) {
      const value = response.headers.get(name);
      if (value) headers.set(name, value);
    }
    return new GraphQLError(first.message, {
      extensions: {
        ...publicExtensions(first.extensions),
        serviceName: this.name,
        http: { status: response.status, headers },
      },
    });
  }
}

function formatError(formatted, error) {
  const extensions = formatted.extensions ?? {};
  if (answeredBySubgraph(extensions)) {
    const { message, path } = formatted;
    return { message, path, extensions: publicExtensions(extensions) };
  }
  // A validation rule's own code (Apollo Server files every rule's error as
  // GRAPHQL_VALIDATION_FAILED).
  const ruleCode = error?.originalError?.extensions?.code;
  const code =
    extensions.code === "GRAPHQL_VALIDATION_FAILED" && REFUSALS.has(ruleCode)
      ? ruleCode
      : extensions.code;
  if (REFUSALS.has(code) && formatted.path === undefined) {
    return { message: formatted.message, locations: formatted.locations, extensions: { code } };
  }
  return maskedError(error, formatted.path);
}

// An answer that is only a subgraph's refusal of the caller keeps the subgraph's status (401,
// 429), as the gateway answers it.
const refusalStatus = {
  async requestDidStart() {
    return {
      async willSendResponse({ response }) {
        if (response.body.kind !== "single") return;
        const { data, errors } = response.body.singleResult;
        const head = refusalHead(data, errors);
        if (head === null) return;
        response.http.status = head.status;
        for (const [name, value] of Object.entries(head.headers)) {
          // The subgraph's own header (its challenge, its Retry-After) when it sent one.
          const key = name.toLowerCase();
          if (!response.http.headers.has(key)) response.http.headers.set(key, value);
        }
      },
    };
  },
};

const gateway = new ApolloGateway({
  supergraphSdl: readFileSync(file, "utf8"),
  buildService: ({ name, url }) => new SubgraphSource(name, url),
});
const server = new ApolloServer({
  gateway,
  introspection: false,
  hideSchemaDetailsFromClientErrors: true,
  includeStacktraceInErrorResponses: false,
  // Cross-site request forgery: a POST that is not JSON is refused by the HTTP front below; a
  // GET must carry a header a browser's form cannot set.
  csrfPrevention: true,
  parseOptions: { maxTokens: limits.maxTokens },
  // Apollo Server's guard against fragments that multiply selections, then the gateway's limits.
  maxRecursiveSelections: true,
  validationRules: [
    depthLimitRule(limits.maxQueryDepth),
    aliasLimitRule(limits.maxAliases),
    noSubscriptionsRule,
  ],
  // Apollo's automatic persisted queries keep whatever text a caller sends: not when the city
  // runs registered documents only (the manifests name them, see trusted-documents.mjs).
  persistedQueries: documents?.only ? false : undefined,
  formatError,
  plugins: [
    ApolloServerPluginLandingPageDisabled(),
    ApolloServerPluginUsageReportingDisabled(),
    ApolloServerPluginSchemaReportingDisabled(),
    refusalStatus,
  ],
});
await server.start();

class Refusal extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The body, refused unread when its declared length is over the limit, and as soon as what
 * arrives is. */
function readBody(request) {
  const declared = Number(request.headers["content-length"]);
  const tooLarge = () =>
    new Refusal(
      413,
      "PAYLOAD_TOO_LARGE",
      `the request body is larger than ${limits.maxBodyBytes} bytes`,
    );
  if (declared > limits.maxBodyBytes) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks = [];
    let read = 0;
    request.on("data", (chunk) => {
      read += chunk.length;
      if (read > limits.maxBodyBytes) {
        request.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    request.on("end", () => resolve(Buffer.concat(chunks)));
    request.on("error", reject);
  });
}

/** The GraphQL request's parameters, checked as the gateway checks them before parsing, with
 * a named document's text filled in. */
function checked(params) {
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    throw new Refusal(
      400,
      "BAD_REQUEST",
      "a request body is one JSON object (batches are refused)",
    );
  }
  if (documents) {
    const resolved = resolveDocument(documents, params);
    if (resolved.status) throw new Refusal(resolved.status, resolved.code, resolved.message);
    params = { ...params, query: resolved.query };
    delete params.documentId;
    if (params.extensions?.persistedQuery || params.extensions?.documentId) {
      const { persistedQuery: _hash, documentId: _id, ...extensions } = params.extensions;
      params.extensions = extensions;
    }
  }
  if (typeof params.query === "string" && params.query.length > limits.maxDocumentBytes) {
    throw new Refusal(
      413,
      "DOCUMENT_TOO_LARGE",
      `the GraphQL document is longer than ${limits.maxDocumentBytes} bytes`,
    );
  }
  return params;
}

async function graphqlRequest(request, requestId) {
  const url = new URL(request.url, "http://router");
  if (url.pathname !== "/graphql" && url.pathname !== "/") {
    throw new Refusal(404, "NOT_FOUND", "no such route");
  }
  const headers = new HeaderMap();
  for (const [name, value] of Object.entries(request.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  let body;
  let search = "";
  if (request.method === "POST") {
    const type = (request.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
    if (!JSON_TYPES.has(type)) {
      // Cross-site request forgery: a browser form cannot post JSON.
      throw new Refusal(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "POST GraphQL documents as application/json",
      );
    }
    const raw = await readBody(request);
    try {
      body = checked(JSON.parse(raw.toString("utf8")));
    } catch (error) {
      if (error instanceof Refusal) throw error;
      throw new Refusal(400, "BAD_REQUEST", "the request body is not JSON");
    }
  } else if (request.method === "GET") {
    const params = Object.fromEntries(url.searchParams);
    for (const name of ["extensions", "variables"]) {
      try {
        if (params[name]) params[name] = JSON.parse(params[name]);
      } catch {
        throw new Refusal(400, "BAD_REQUEST", `${name} is not JSON`);
      }
    }
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(checked(params))) {
      if (value === undefined || value === null) continue;
      query.set(name, typeof value === "string" ? value : JSON.stringify(value));
    }
    search = `?${query}`;
  } else {
    throw new Refusal(405, "METHOD_NOT_ALLOWED", "GraphQL is served over GET and POST");
  }
  const authorization = request.headers.authorization;
  return server.executeHTTPGraphQLRequest({
    httpGraphQLRequest: { method: request.method, headers, search, body },
    context: async () => ({ authorization, requestId }),
  });
}

async function serve(request, response) {
  const requestId = requestIdFor(request.headers["x-request-id"]);
  response.setHeader("x-request-id", requestId);
  try {
    const answer = await runAsRequest(requestId, () => graphqlRequest(request, requestId));
    for (const [name, value] of answer.headers) response.setHeader(name, value);
    response.statusCode = answer.status ?? 200;
    if (answer.body.kind === "complete") {
      response.end(answer.body.string);
      return;
    }
    for await (const chunk of answer.body.asyncIterator) response.write(chunk);
    response.end();
  } catch (error) {
    const refusal = error instanceof Refusal ? error : null;
    if (!refusal) runAsRequest(requestId, () => maskedError(error));
    const status = refusal?.status ?? 500;
    if (!request.complete) response.setHeader("connection", "close"); // the rest is not read
    response.writeHead(status, { "content-type": "application/json" });
    const message =
      refusal?.message ?? `internal error; quote request id ${requestId} when you report it`;
    response.end(refusalBody(message, refusal?.code ?? "INTERNAL_ERROR", requestId));
  }
}

const httpServer = http.createServer(serve);
// The whole request (headers and body) within 30 s: a caller sending slowly holds nothing long.
httpServer.requestTimeout = 30_000;
httpServer.listen(Number(port), "127.0.0.1", () => {
  process.stdout.write(`apollo gateway on http://127.0.0.1:${port}/\n`);
});
