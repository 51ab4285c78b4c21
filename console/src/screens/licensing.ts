// For licensing officers: the licensees, each licence's state, quota and use this period, the
// requests per day of the last 30 days (drawn), and each month's statement to download (the
// public /v1/usage/statement, fetched with the officer's token and saved from memory).

import type { Client } from "@urql/core";
import { h, replace } from "../dom";
import { LicensingDocument, type LicensingQuery } from "../gql/graphql";
import { registered } from "../graph";
import { t, when } from "../i18n";

type Licence = LicensingQuery["licences"][number];
const SVG = "http://www.w3.org/2000/svg";
const DAYS = 30;

function svg(tag: string, attributes: Record<string, string | number>): SVGElement {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  return element;
}

function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

/** Requests per day (every model and outcome summed), one bar a day. */
function dailyChart(licence: Licence, since: Date): SVGElement {
  const counts = new Map<string, number>();
  for (const row of licence.dailyUsage) counts.set(row.day, (counts.get(row.day) ?? 0) + row.requests);
  const days = Array.from({ length: DAYS }, (_, i) => isoDay(new Date(since.getTime() + i * 86_400_000)));
  const most = Math.max(1, ...days.map((day) => counts.get(day) ?? 0));
  const width = 16 * DAYS + 40;
  const height = 120;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  chart.setAttribute("aria-label", `${licence.code}: ${t("requestsPerDay")}`);
  days.forEach((day, i) => {
    const value = counts.get(day) ?? 0;
    const bar = (value / most) * (height - 30);
    const rect = svg("rect", { x: 30 + i * 16, y: height - 20 - bar, width: 12, height: bar, fill: "#0b5cad" });
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${day}: ${value}`;
    rect.append(title);
    chart.append(rect);
  });
  const top = svg("text", { x: 2, y: 12, "font-size": 11 });
  top.textContent = String(most);
  chart.append(top, svg("line", { x1: 28, x2: width, y1: height - 20, y2: height - 20, stroke: "#57606a" }));
  return chart;
}

async function download(token: () => string, licence: Licence, period: string, status: HTMLElement): Promise<void> {
  const url = `/v1/usage/statement?licence=${encodeURIComponent(licence.code)}&period=${period}`;
  const response = await fetch(url, { headers: { Authorization: `Bearer ${token()}` } });
  if (!response.ok) {
    status.textContent = `${response.status} ${await response.text()}`;
    return;
  }
  const link = h("a", {
    href: URL.createObjectURL(await response.blob()),
    download: `${licence.code}-${period}.csv`,
  }) as HTMLAnchorElement;
  link.click();
  status.textContent = `${t("downloaded")} ${licence.code} ${period}`;
}

export function licensingScreen(root: HTMLElement, client: Client, token: () => string): () => void {
  const since = new Date(Date.now() - (DAYS - 1) * 86_400_000);
  const status = h("p", { class: "notice", role: "status", "aria-live": "polite" });
  replace(root, h("p", {}, t("loading")));
  void (async () => {
    const result = await client.query(registered(LicensingDocument), { from: isoDay(since) }).toPromise();
    const data = result.data;
    if (!data) {
      replace(root, h("p", { role: "alert" }, result.error?.message ?? ""));
      return;
    }
    const companies = new Map(data.licensees.map((l) => [Number(atob(l.id).split(":")[1]), l]));
    const month = new Date().toISOString().slice(0, 7);
    replace(
      root,
      h("h1", {}, t("licensing")),
      status,
      ...data.licences.map((licence) => {
        const company = companies.get(licence.licenseeId);
        return h(
          "section",
          { class: "licence", "data-code": licence.code, "aria-label": licence.code },
          h("h2", {}, `${licence.code} · ${company ? company.company : licence.licenseeId}`),
          h(
            "dl",
            { class: "facts" },
            h("dt", {}, t("licenceState")),
            h("dd", { class: "state", "data-state": licence.state }, licence.state + (licence.suspensionReason ? ` — ${licence.suspensionReason}` : "")),
            h("dt", {}, t("licensedModels")),
            h("dd", {}, licence.models.join(", ")),
            h("dt", {}, t("purpose")),
            h("dd", {}, licence.purpose),
            h("dt", {}, t("valid")),
            h("dd", {}, `${when(licence.validFrom)} – ${when(licence.validUntil)}`),
            h("dt", {}, t("usedThisPeriod")),
            h(
              "dd",
              { class: "used" },
              `${licence.usage.used.requests} / ${licence.quotas.requests} ${t("requests")} (${licence.quotaPeriod})`,
            ),
          ),
          h("h3", {}, t("requestsPerDay")),
          dailyChart(licence, since),
          h(
            "button",
            { type: "button", class: "statement", onclick: () => void download(token, licence, month, status) },
            `${t("statement")} ${month}`,
          ),
        );
      }),
    );
  })();
  return () => undefined;
}
