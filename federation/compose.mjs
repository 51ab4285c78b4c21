// Composes a supergraph from subgraph SDLs with @theguild/federation-composition.
// stdin: JSON [{"name": ..., "url": ..., "sdl": ...}]; stdout: the supergraph SDL.
// On failure: the composition errors on stderr, one per line, and exit status 1.
import { composeServices } from "@theguild/federation-composition";
import { parse } from "graphql";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const subgraphs = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const result = composeServices(
  subgraphs.map(({ name, url, sdl }) => ({ name, url, typeDefs: parse(sdl) })),
);
if (result.errors && result.errors.length > 0) {
  for (const error of result.errors) process.stderr.write(`${error.message}\n`);
  process.exit(1);
}
process.stdout.write(result.supergraphSdl);
