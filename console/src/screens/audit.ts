// For auditors: who saw and did what (the access records, filtered), one record's details, the
// chain checked end to end with its newest signed anchor, and the policies as written.

import type { Client } from "@urql/core";
import { h, replace } from "../dom";
import {
  type AuditFilterInput,
  AuditTrailDocument,
  type AuditTrailQuery,
  LatestAnchorDocument,
  PoliciesDocument,
  VerifyChainDocument,
} from "../gql/graphql";
import { registered } from "../graph";
import { t, when } from "../i18n";

type AuditRecord = AuditTrailQuery["auditRecords"]["edges"][number]["node"];

export function auditScreen(root: HTMLElement, client: Client): () => void {
  const rows = h("tbody");
  const detail = h("pre", { class: "record", tabindex: "0", "aria-live": "polite" });
  const chain = h("p", { class: "chain", role: "status" });
  const anchor = h("p", { class: "anchor" });
  const policies = h("div", { class: "policies" });
  const message = h("p", { class: "message", role: "status" });

  const input = (id: string, label: string, type = "text") =>
    h("label", { class: "field", for: id }, h("span", {}, label), h("input", { id, name: id, type }));

  async function search(form: HTMLFormElement): Promise<void> {
    const data = new FormData(form);
    const filter: AuditFilterInput = {};
    const subject = String(data.get("audit-subject") ?? "").trim();
    const resource = String(data.get("audit-resource") ?? "").trim();
    const from = String(data.get("audit-from") ?? "");
    const before = String(data.get("audit-before") ?? "");
    if (subject) filter.subject = subject;
    if (resource) filter.resource = resource;
    if (from) filter.occurredFrom = new Date(from).toISOString();
    if (before) filter.occurredBefore = new Date(before).toISOString();
    const result = await client
      .query(registered(AuditTrailDocument), { first: 100, filter })
      .toPromise();
    if (!result.data) {
      message.textContent = result.error?.message ?? "";
      return;
    }
    message.textContent = "";
    replace(rows, ...result.data.auditRecords.edges.map((edge) => row(edge.node)));
  }

  function row(record: AuditRecord): HTMLElement {
    return h(
      "tr",
      { "data-seq": record.seq },
      h(
        "td",
        {},
        h(
          "button",
          {
            type: "button",
            class: "link",
            onclick: () => {
              detail.textContent = JSON.stringify(record, null, 2);
              detail.focus();
            },
          },
          String(record.seq),
        ),
      ),
      h("td", {}, when(record.occurredAt)),
      h("td", {}, record.subject),
      h("td", {}, record.category),
      h("td", {}, record.operation),
      h("td", {}, record.resourceIds.slice(0, 3).join(", ") + (record.resourceIds.length > 3 ? " …" : "")),
      h("td", { class: `decision decision-${record.decision.toLowerCase()}` }, record.decision),
    );
  }

  async function verify(): Promise<void> {
    chain.textContent = t("loading");
    const result = await client.query(registered(VerifyChainDocument), {}).toPromise();
    const found = result.data?.verifyAuditChain;
    if (!found) {
      chain.textContent = result.error?.message ?? "";
      return;
    }
    chain.dataset.intact = String(found.intact);
    chain.textContent = found.intact
      ? `${t("chainIntact")} (${found.checked}: ${found.firstSeq}–${found.lastSeq})`
      : `${t("chainBroken")} ${found.firstBrokenSeq}: ${found.reason ?? ""}`;
  }

  replace(
    root,
    h("h1", {}, t("audit")),
    h(
      "form",
      {
        class: "filters",
        role: "search",
        onsubmit: (event: Event) => {
          event.preventDefault();
          void search(event.target as HTMLFormElement);
        },
      },
      input("audit-subject", t("subjectFilter")),
      input("audit-resource", t("resourceFilter")),
      input("audit-from", t("from"), "datetime-local"),
      input("audit-before", t("before"), "datetime-local"),
      h("button", { type: "submit" }, t("searchButton")),
    ),
    message,
    h(
      "table",
      { class: "board audit" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ...["#", t("when"), t("subjectFilter"), t("category"), t("operation"), t("resourceFilter"), t("decision")].map(
            (label) => h("th", { scope: "col" }, label),
          ),
        ),
      ),
      rows,
    ),
    h("h2", {}, t("recordDetail")),
    detail,
    h("h2", {}, t("chain")),
    h("button", { type: "button", id: "verify-chain", onclick: () => void verify() }, t("verifyChain")),
    chain,
    anchor,
    h("h2", {}, t("policies")),
    policies,
  );
  void search(root.querySelector("form") as HTMLFormElement);
  void (async () => {
    const latest = (await client.query(registered(LatestAnchorDocument), {}).toPromise()).data?.auditAnchors[0];
    anchor.textContent = latest
      ? `${t("latestAnchor")}: #${latest.seq} · ${when(latest.anchoredAt)} · ${latest.hash.slice(0, 16)}…`
      : t("noAnchor");
    const set = (await client.query(registered(PoliciesDocument), {}).toPromise()).data?.policySet;
    if (set) {
      replace(
        policies,
        h("p", {}, `${t("policyVersion")} ${set.version}`),
        ...set.policies.map((policy) =>
          h(
            "details",
            {},
            h("summary", {}, `${policy.id} — ${policy.description}`),
            h("pre", {}, policy.text),
          ),
        ),
      );
    }
  })();
  return () => undefined;
}
