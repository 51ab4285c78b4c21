// Hive Gateway in front of Lighthouse's subgraphs: `hive-gateway supergraph supergraph.graphql`
// run in this directory reads this file. The caller's bearer token goes to every subgraph, which
// authenticates and authorizes it itself (its own policies and row-level security): the gateway
// is trusted with nothing. It refuses what the unified gateway refuses, before planning: bodies
// and documents over the gateway's sizes, its depth, alias and token limits, introspection,
// field suggestions, subscriptions (the gateway's own), and, when the city runs registered
// documents only, any other document. Its errors name nothing inside (hardening.mjs).
import { defineConfig } from "@graphql-hive/gateway";
import { GraphQLError } from "graphql";
import {
  aliasLimitRule,
  answeredBySubgraph,
  currentRequestId,
  depthLimitRule,
  enterRequest,
  maskedError,
  noSubscriptionsRule,
  publicExtensions,
  readLimits,
  refusalHead,
  refuseTelemetry,
  requestIdFor,
} from "./hardening.mjs";
import {
  TRUSTED_DOCUMENT_REQUIRED,
  namedDocument,
  readTrustedDocuments,
} from "./trusted-documents.mjs";

refuseTelemetry();
const limits = readLimits();
const documents = readTrustedDocuments();
const generatedIds = new WeakMap();

function refused(message, code, status) {
  return new GraphQLError(message, {
    extensions: { code, requestId: currentRequestId(), http: { status } },
  });
}

// Yoga reads bodies up to 25 MB and Hive Gateway does not pass its option on: the gateway's
// limit, on the declared length and on what a streamed body delivers.
function bodyLimit(maxBytes) {
  const tooLarge = () =>
    refused(`the request body is larger than ${maxBytes} bytes`, "PAYLOAD_TOO_LARGE", 413);
  return {
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI }) {
      const declared = request.headers.get("content-length");
      if (declared !== null && Number(declared) > maxBytes) throw tooLarge();
      if (requestParser == null || request.body == null) return;
      setRequestParser((original) => {
        let read = 0;
        const body = original.body.pipeThrough(
          new fetchAPI.TransformStream({
            transform(chunk, controller) {
              read += chunk.byteLength;
              if (read > maxBytes) controller.error(tooLarge());
              else controller.enqueue(chunk);
            },
          }),
        );
        const limited = new fetchAPI.Request(original.url, {
          method: original.method,
          headers: original.headers,
          signal: original.signal,
          body,
          duplex: "half",
        });
        return requestParser(limited);
      });
    },
  };
}

// Before parsing (the token limit does not count comments), and, with registered documents
// only, any text that is not one of them.
function documentChecks() {
  return {
    onParams({ params }) {
      const query = params.query;
      if (typeof query !== "string") return;
      if (query.length > limits.maxDocumentBytes) {
        throw refused(
          `the GraphQL document is longer than ${limits.maxDocumentBytes} bytes`,
          "DOCUMENT_TOO_LARGE",
          413,
        );
      }
      if (documents?.only && !documents.has(query)) {
        throw refused(TRUSTED_DOCUMENT_REQUIRED, "TRUSTED_DOCUMENT_REQUIRED", 400);
      }
    },
  };
}

function lighthouseRules() {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(depthLimitRule(limits.maxQueryDepth));
      addValidationRule(aliasLimitRule(limits.maxAliases));
      addValidationRule(noSubscriptionsRule);
    },
  };
}

// Masked errors name the request (Hive Gateway's id: the caller's X-Request-ID, or a new one).
function requestIds() {
  return {
    onRequest({ request }) {
      enterRequest(generatedIds.get(request) ?? requestIdFor(request.headers.get("x-request-id")));
    },
  };
}

// An answer that is only a subgraph's refusal of the caller (a bad token, its rate limit) keeps
// the status the gateway answers it with, not 200.
function refusalStatus() {
  return {
    onExecutionResult({ result, setResult }) {
      if (!result || Symbol.asyncIterator in result) return;
      const head = refusalHead(result.data, result.errors);
      if (head === null) return;
      setResult({
        ...result,
        errors: result.errors.map((error) =>
          new GraphQLError(error.message, {
            nodes: error.nodes,
            path: error.path,
            extensions: { ...error.extensions, http: head },
          }),
        ),
      });
    },
  };
}

/** Whether ``error`` is a GraphQL error all the way down (not a failure the router wrapped). */
function isOriginal(error) {
  for (let cause = error; cause; cause = cause.originalError) {
    if (cause.name !== "GraphQLError") return false;
  }
  return Boolean(error);
}

function maskError(error) {
  const extensions = (isOriginal(error) && error.extensions) || {};
  if (isOriginal(error) && answeredBySubgraph(extensions)) {
    return new GraphQLError(error.message, {
      nodes: error.nodes,
      path: error.path,
      extensions: {
        ...publicExtensions(extensions),
        ...(extensions.http ? { http: extensions.http } : {}),
      },
    });
  }
  // The router's refusal of the request itself: it does not parse, is invalid, too large, …
  const refusal = error?.path === undefined && extensions.code !== "INTERNAL_SERVER_ERROR";
  if (isOriginal(error) && refusal) {
    return new GraphQLError(error.message, {
      nodes: error.nodes,
      extensions: { ...extensions, code: extensions.code ?? "BAD_REQUEST" },
    });
  }
  const masked = maskedError(error, error?.path);
  return new GraphQLError(masked.message, { path: masked.path, extensions: masked.extensions });
}

export const gatewayConfig = defineConfig({
  propagateHeaders: {
    fromClientToSubgraphs({ request }) {
      return { authorization: request.headers.get("authorization") };
    },
  },
  // The subgraphs keep their own limits; the router gives each call a deadline.
  upstreamTimeout: 30_000,
  // The whole request (headers and body) within 30 s: a caller sending slowly holds nothing long.
  requestTimeout: 30_000,
  // The router answers no one about its schema (the subgraphs' `_service` is for the router's
  // own credentials): introspection off, "Did you mean …?" gone.
  disableIntrospection: { disableIf: () => true },
  blockFieldSuggestions: true,
  maxTokens: limits.maxTokens,
  maskedErrors: { isDev: false, maskError },
  // A subgraph's errors keep their own code; which subgraph answered is not the caller's business
  // (maskError drops the name after using it).
  subgraphErrors: { errorCode: false },
  requestId: {
    generateRequestId({ request }) {
      const id = requestIdFor(undefined);
      generatedIds.set(request, id);
      return id;
    },
  },
  // Browsers' forms cannot post JSON; everything else must carry a header a form cannot set.
  csrfPrevention: { requestHeaders: ["graphql-require-preflight", "apollo-require-preflight"] },
  // Subscriptions are the gateway's (refused here by noSubscriptionsRule): no WebSocket server.
  disableWebsockets: true,
  graphiql: false,
  landingPage: false,
  ...(documents && {
    persistedDocuments: {
      getPersistedOperation: (named) => documents.text(named),
      extractPersistedOperationId: (params) => {
        try {
          return namedDocument(params) ?? null;
        } catch {
          return null;
        }
      },
      // A text is checked by documentChecks, which takes a registered text as the gateway does.
      allowArbitraryDocuments: true,
      customErrors: {
        notFound: {
          message: "PersistedQueryNotFound",
          extensions: { code: "PERSISTED_QUERY_NOT_FOUND", http: { status: 400 } },
        },
        keyNotFound: {
          message: "send a query, or a documentId that names a registered document",
          extensions: { code: "BAD_REQUEST", http: { status: 400 } },
        },
      },
    },
  }),
  plugins: () => [
    bodyLimit(limits.maxBodyBytes),
    documentChecks(),
    lighthouseRules(),
    requestIds(),
    refusalStatus(),
  ],
  logging: process.env.HIVE_LOGGING ?? "warn",
});
