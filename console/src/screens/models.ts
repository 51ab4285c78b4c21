// For the city's model officers: which version is in production and why, the trial under way
// (shadow or canary), and how each version did per category on the city's own reviews —
// precision with its 95% interval, drawn, and the misses of the threshold — and what the
// evaluation runs measured on the bureaus' labelled sets (precision and recall, with intervals).

import type { Client } from "@urql/core";
import { h, replace } from "../dom";
import {
  ModelEvaluationsDocument,
  type ModelEvaluationsQuery,
  ModelsDocument,
  type ModelsQuery,
} from "../gql/graphql";
import { registered } from "../graph";
import { t, when } from "../i18n";

type Quality = ModelsQuery["modelQuality"][number];
const SVG = "http://www.w3.org/2000/svg";

function svg(tag: string, attributes: Record<string, string | number>): SVGElement {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  return element;
}

/** Precision per row as a dot, its interval as a bar, on a 0–1 scale. */
function precisionChart(rows: Quality[]): SVGElement {
  const width = 640;
  const line = 22;
  const left = 260;
  const height = rows.length * line + 30;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  chart.setAttribute("aria-label", t("precisionChart"));
  const scale = (value: number) => left + value * (width - left - 20);
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(svg("line", { x1: scale(tick), x2: scale(tick), y1: 0, y2: height - 20, stroke: "#d0d7de" }));
    const label = svg("text", { x: scale(tick), y: height - 5, "text-anchor": "middle", "font-size": 11 });
    label.textContent = tick.toFixed(2);
    chart.append(label);
  }
  rows.forEach((row, index) => {
    const y = index * line + 14;
    const name = svg("text", { x: 4, y: y + 4, "font-size": 12 });
    name.textContent = `${row.model}@${row.version} ${row.category}`;
    chart.append(name);
    if (row.precisionInterval) {
      chart.append(
        svg("line", {
          x1: scale(row.precisionInterval.low),
          x2: scale(row.precisionInterval.high),
          y1: y,
          y2: y,
          stroke: "#0b5cad",
          "stroke-width": 4,
          "stroke-linecap": "round",
          opacity: 0.4,
        }),
      );
    }
    if (row.precision !== null && row.precision !== undefined) {
      chart.append(svg("circle", { cx: scale(row.precision), cy: y, r: 5, fill: "#0b5cad" }));
    }
  });
  return chart;
}

const percent = (value: number | null | undefined) =>
  value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)}%`;

export function modelsScreen(root: HTMLElement, client: Client): () => void {
  replace(root, h("p", {}, t("loading")));
  void (async () => {
    const result = await client.query(registered(ModelsDocument), {}).toPromise();
    const data = result.data;
    if (!data) {
      replace(root, h("p", { role: "alert" }, result.error?.message ?? ""));
      return;
    }
    const production = data.productionModel;
    const evaluations = h("div", { class: "evaluations" }, t("loading"));
    void client
      .query(registered(ModelEvaluationsDocument), {})
      .toPromise()
      .then((found) => {
        const sets = found.data?.evaluationSets;
        if (!sets) {
          replace(evaluations, h("p", { role: "alert" }, found.error?.message ?? ""));
          return;
        }
        replace(evaluations, ...(sets.length ? sets.map(evaluationSet) : [h("p", {}, t("noEvaluations"))]));
      });
    const trial = data.modelTrial;
    replace(
      root,
      h("h1", {}, t("models")),
      h("h2", {}, t("production")),
      production
        ? h(
            "p",
            { class: "production", "data-version": `${production.model}@${production.version}` },
            `${production.model}@${production.version} — ${production.reason} (${production.decidedBy}, ${when(production.decidedAt)})`,
          )
        : h("p", {}, t("noDecision")),
      h("h2", {}, t("trial")),
      trial && !trial.endedAt
        ? h(
            "div",
            { class: "trial" },
            h(
              "p",
              {},
              `${trial.decision.role} ${trial.decision.model}@${trial.decision.version} · ${t("share")} ${percent(trial.decision.share)}` +
                ` · ${t("frames")} ${trial.productionFrames} / ${trial.candidateFrames}`,
            ),
            h(
              "table",
              { class: "board" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  ...[t("category"), `${t("production")} ${t("precision")}`, `${t("candidate")} ${t("precision")}`].map((label) =>
                    h("th", { scope: "col" }, label),
                  ),
                ),
              ),
              h(
                "tbody",
                {},
                ...trial.categories.map((c) =>
                  h(
                    "tr",
                    {},
                    h("td", {}, c.category),
                    h("td", {}, `${percent(c.production.precision)} (${c.production.reviewed})`),
                    h("td", {}, `${percent(c.candidate.precision)} (${c.candidate.reviewed})`),
                  ),
                ),
              ),
            ),
          )
        : h("p", {}, t("noTrial")),
      h("h2", {}, t("quality")),
      data.modelQuality.length ? precisionChart(data.modelQuality) : h("p", {}, t("noReviews")),
      h(
        "table",
        { class: "board quality" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ...[
              t("version"),
              t("category"),
              t("detectionsCount"),
              t("reviewedCount"),
              t("precision"),
              t("interval"),
              t("thresholdMisses"),
            ].map((label) => h("th", { scope: "col" }, label)),
          ),
        ),
        h(
          "tbody",
          {},
          ...data.modelQuality.map((row) =>
            h(
              "tr",
              { "data-key": `${row.model}@${row.version}/${row.category}` },
              h("td", {}, `${row.model}@${row.version} (${row.promptVersion})`),
              h("td", {}, row.category),
              h("td", {}, String(row.detections)),
              h("td", {}, String(row.reviewed)),
              h("td", { class: "precision" }, percent(row.precision)),
              h(
                "td",
                {},
                row.precisionInterval
                  ? `${percent(row.precisionInterval.low)} – ${percent(row.precisionInterval.high)}`
                  : "—",
              ),
              h("td", {}, String(row.thresholdMisses)),
            ),
          ),
        ),
      ),
      h("h2", {}, t("evaluations")),
      evaluations,
      h("h2", {}, t("decisions")),
      h(
        "ol",
        { class: "timeline" },
        ...data.modelDecisions.map((d) =>
          h("li", {}, `${when(d.decidedAt)} ${d.role} ${d.model}@${d.version} — ${d.reason} (${d.decidedBy})`),
        ),
      ),
    );
  })();
  return () => undefined;
}

type EvaluationSet = NonNullable<ModelEvaluationsQuery["evaluationSets"]>[number];

const interval = (value: { low: number; high: number } | null | undefined) =>
  value ? `${percent(value.low)} – ${percent(value.high)}` : "—";

/** One labelled set: each run over it, a row per category with what it measured. */
function evaluationSet(set: EvaluationSet): HTMLElement {
  const rows = set.runs.flatMap((run) =>
    run.categories.map((c) =>
      h(
        "tr",
        { "data-key": `${run.model}@${run.version}/${c.category}` },
        h("td", {}, `${run.model}@${run.version} (${run.promptVersion})`),
        h("td", {}, `${run.answered} / ${run.frames}${run.unusable ? ` (${run.unusable} ${t("unusable")})` : ""}`),
        h("td", {}, c.category),
        h("td", {}, String(c.labelled)),
        h("td", { class: "precision" }, `${percent(c.precision)} (${interval(c.precisionInterval)})`),
        h("td", { class: "recall" }, `${percent(c.recall)} (${interval(c.recallInterval)})`),
        h("td", {}, c.threshold.toFixed(2)),
      ),
    ),
  );
  return h(
    "section",
    { class: "evaluation-set", "data-set": `${set.name}@${set.version}` },
    h(
      "h3",
      {},
      `${set.name} v${set.version} · ${set.bureau} · ${set.frames} ${t("setFrames")} · ${set.categories.join("、")} · ${when(set.createdAt)}`,
    ),
    rows.length
      ? h(
          "table",
          { class: "board" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ...[t("version"), t("answered"), t("category"), t("labelled"), t("precision"), t("recall"), t("threshold")].map(
                (label) => h("th", { scope: "col" }, label),
              ),
            ),
          ),
          h("tbody", {}, ...rows),
        )
      : h("p", {}, t("noRuns")),
  );
}
