// Builds the console into ../api/http/static/console: the page, its script and stylesheet, the
// persisted-document manifest the gateway registers, and the licences of what the script bundles.
import { build } from "esbuild";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "api", "http", "static", "console");
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });

const result = await build({
  entryPoints: { app: join(here, "src", "main.ts") },
  bundle: true,
  format: "esm",
  // The map's library is a chunk of its own, loaded when the map is opened.
  splitting: true,
  chunkNames: "chunk-[hash]",
  target: "es2022",
  minify: true,
  sourcemap: false,
  legalComments: "none",
  metafile: true,
  outdir: join(out, "assets"),
  logLevel: "warning",
});
await build({
  entryPoints: { app: join(here, "src", "styles.css") },
  bundle: true,
  minify: true,
  outdir: join(out, "assets"),
  logLevel: "warning",
});

writeFileSync(
  join(out, "index.html"),
  `<!doctype html>
<html lang="zh-TW">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lighthouse</title>
<link rel="stylesheet" href="/console/assets/app.css">
<script type="module" src="/console/assets/app.js"></script>
</head>
<body><div id="app"></div></body>
</html>
`,
);
cpSync(join(here, "src", "gql", "persisted-documents.json"), join(out, "persisted-documents.json"));
// MapLibre's worker, started from this gateway's own URL (setWorkerUrl in src/screens/map.ts).
cpSync(
  join(here, "node_modules", "maplibre-gl", "dist", "maplibre-gl-worker.mjs"),
  join(out, "assets", "maplibre-gl-worker.mjs"),
);

// The licences of every package whose code is in the bundle.
const packages = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (match) packages.add(match[1]);
}
const notices = [...packages].sort().map((name) => {
  const root = join(here, "node_modules", name);
  const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  let text = "";
  for (const file of ["LICENSE", "LICENSE.md", "LICENSE.txt", "license", "LICENCE"]) {
    try {
      text = readFileSync(join(root, file), "utf8");
      break;
    } catch {}
  }
  return `${name}@${manifest.version} (${manifest.license})\n\n${text || "(no licence file shipped)"}\n`;
});
writeFileSync(join(out, "assets", "licences.txt"), notices.join("\n" + "-".repeat(72) + "\n\n"));
const size = readFileSync(join(out, "assets", "app.js")).length;
console.log(
  `console: built into ${out} (first script ${size} bytes; ${packages.size} packages bundled)`,
);
