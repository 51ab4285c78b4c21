// The board's incidents on a map (MapLibre GL). No public tile server is ever asked: the base
// map is the city's own tile server when one is configured, otherwise a plain background; the
// city's outline (from this gateway, when it names one) and a scale are drawn over either. The pointer's place is shown in WGS84 and TWD97, and an incident's case number,
// status and coordinates under the pointer.

import type { Client } from "@urql/core";
import type { StyleSpecification } from "@maplibre/maplibre-gl-style-spec";
import {
  LngLatBounds,
  Map as MapLibre,
  type MapLayerMouseEvent,
  type MapMouseEvent,
  NavigationControl,
  ScaleControl,
  setWorkerUrl,
} from "maplibre-gl";
import { h, replace } from "../dom";
import { BoardDocument } from "../gql/graphql";
import { registered } from "../graph";
import { statusName, t } from "../i18n";
import { twd97 } from "../twd97";

setWorkerUrl("/console/assets/maplibre-gl-worker.mjs");

const COLOURS: Record<string, string> = { OPEN: "#cf222e", FIXED: "#1a7f37", CLOSED: "#57606a" };

export function mapScreen(
  root: HTMLElement,
  client: Client,
  tiles: string | null,
  outline: string | null,
): () => void {
  const where = h("p", { class: "pointer", "aria-live": "polite" }, t("pointerHint"));
  const container = h("div", { class: "map", role: "region", "aria-label": t("map") });
  replace(root, h("h1", {}, t("map")), where, container);
  const style: StyleSpecification = {
    version: 8,
    sources: tiles
      ? { base: { type: "raster", tiles: [tiles], tileSize: 256, attribution: t("cityTiles") } }
      : {},
    layers: [
      { id: "background", type: "background", paint: { "background-color": "#eef2f5" } },
      ...(tiles ? [{ id: "base", type: "raster" as const, source: "base" }] : []),
    ],
  };
  const map = new MapLibre({
    container,
    style,
    center: [120.31, 22.63],
    zoom: 11,
    attributionControl: false,
  });
  map.addControl(new ScaleControl({ unit: "metric" }), "bottom-left");
  map.addControl(new NavigationControl({ showCompass: false }), "top-right");
  (window as unknown as { lighthouseMap?: MapLibre }).lighthouseMap = map;

  map.on("mousemove", (event: MapMouseEvent) => {
    const { lat, lng } = event.lngLat;
    const projected = twd97(lat, lng);
    const hit = map.getLayer("incidents")
      ? map.queryRenderedFeatures(event.point, { layers: ["incidents"] })[0]
      : undefined;
    const place = `WGS84 ${lat.toFixed(6)}, ${lng.toFixed(6)} · TWD97 ${projected.x.toFixed(1)}, ${projected.y.toFixed(1)}`;
    where.textContent = hit
      ? `${hit.properties.caseNumber} ${statusName(String(hit.properties.status))} · ${place}`
      : place;
  });

  map.on("load", async () => {
    if (outline) {
      map.addSource("outline", { type: "geojson", data: outline });
      map.addLayer({
        id: "outline",
        type: "line",
        source: "outline",
        paint: { "line-color": "#0b5cad", "line-width": 1.5, "line-opacity": 0.8 },
      });
    }
    const result = await client
      .query(registered(BoardDocument), { first: 100, filter: { statusClass: ["OPEN"] } })
      .toPromise();
    const incidents = result.data?.incidents.edges.map((edge) => edge.node) ?? [];
    map.addSource("incidents", {
      type: "geojson",
      data: {
        type: "FeatureCollection",
        features: incidents.map((incident) => ({
          type: "Feature",
          geometry: { type: "Point", coordinates: [incident.location.longitude, incident.location.latitude] },
          properties: {
            id: incident.id,
            caseNumber: incident.caseNumber,
            status: incident.status,
            colour: COLOURS[incident.statusClass] ?? "#0b5cad",
          },
        })),
      },
    });
    map.addLayer({
      id: "incidents",
      type: "circle",
      source: "incidents",
      paint: {
        "circle-radius": 6,
        "circle-color": ["get", "colour"],
        "circle-stroke-color": "#ffffff",
        "circle-stroke-width": 1.5,
      },
    });
    map.on("click", "incidents", (event: MapLayerMouseEvent) => {
      const id = event.features?.[0]?.properties?.id;
      if (id) location.hash = `#/incident/${encodeURIComponent(String(id))}`;
    });
    container.dataset.incidents = String(incidents.length);
    if (incidents.length) {
      const bounds = new LngLatBounds();
      for (const incident of incidents) bounds.extend([incident.location.longitude, incident.location.latitude]);
      map.fitBounds(bounds, { padding: 40, maxZoom: 16, duration: 0 });
    }
  });
  return () => map.remove();
}
