// The model's findings waiting for a person: the detections whose incident is still DETECTED,
// the ones the model was surest of first. Confirm (verify the incident), reject (close it as a
// false report) or open it to mark it a duplicate: by button, or by keyboard (j/k to move, c to
// confirm, r to reject, d to open for a duplicate). These decisions are the ground truth the
// city measures its models by.

import type { Client } from "@urql/core";
import { h, replace } from "../dom";
import { CloseDocument, ReviewQueueDocument, type ReviewQueueQuery, VerifyDocument } from "../gql/graphql";
import { registered } from "../graph";
import { actionName, t, when } from "../i18n";

type Finding = ReviewQueueQuery["detections"]["edges"][number]["node"];

export function reviewScreen(root: HTMLElement, client: Client, zh: boolean): () => void {
  let findings: Finding[] = [];
  let selected = 0;
  const list = h("ol", { class: "queue", "aria-label": t("review") });
  const count = h("p", { class: "count", "aria-live": "polite" });
  const notice = h("p", { class: "notice", role: "status", "aria-live": "polite" });

  async function load(): Promise<void> {
    const result = await client
      .query(registered(ReviewQueueDocument), { first: 50, filter: { awaitingReview: true } })
      .toPromise();
    if (!result.data) {
      notice.textContent = result.error?.message ?? "";
      return;
    }
    findings = result.data.detections.edges.map((edge) => edge.node);
    count.textContent = `${result.data.detections.totalCount} ${t("waiting")}`;
    selected = Math.min(selected, Math.max(0, findings.length - 1));
    render();
  }

  async function decide(finding: Finding, confirm: boolean): Promise<void> {
    const incident = finding.incident;
    if (!incident) return;
    const action = confirm ? "VERIFY" : "CLOSE";
    if (!incident.permittedActions.includes(action)) return;
    if (!confirm && !incident.permittedClosingReasons.includes("FALSE_POSITIVE")) return;
    const input = { id: incident.id, expectedVersion: incident.version };
    const response = confirm
      ? await client.mutation(registered(VerifyDocument), { input }).toPromise()
      : await client
          .mutation(registered(CloseDocument), { input: { ...input, reason: "FALSE_POSITIVE" } })
          .toPromise();
    const result = response.data?.result;
    if (result?.__typename === "VersionConflict") {
      notice.textContent = t("conflict");
    } else if (result && "incident" in result && result.incident) {
      notice.textContent = `${incident.caseNumber} ${actionName(action)}: ${t("done")}`;
    } else {
      notice.textContent = (result && "message" in result ? result.message : "") || response.error?.message || "";
    }
    await load();
  }

  function item(finding: Finding, index: number): HTMLElement {
    const incident = finding.incident;
    const category = finding.category;
    const canConfirm = !!incident?.permittedActions.includes("VERIFY");
    const canReject = !!incident?.permittedClosingReasons.includes("FALSE_POSITIVE");
    return h(
      "li",
      {
        class: index === selected ? "finding selected" : "finding",
        "data-id": finding.id,
        "aria-current": index === selected ? "true" : undefined,
      },
      h(
        "div",
        { class: "what" },
        h("strong", {}, category ? (zh ? category.nameZh : category.nameEn) : ""),
        ` ${t("confidence")} ${(finding.confidence * 100).toFixed(0)}%`,
        finding.note ? ` — ${finding.note}` : "",
      ),
      h(
        "div",
        { class: "where" },
        `${finding.camera?.code ?? ""} · ${when(finding.detectedAt)} · ${finding.analysis?.model ?? ""}@${finding.analysis?.modelVersion ?? ""} (${finding.analysis?.promptVersion ?? ""})`,
      ),
      incident
        ? h("a", { href: `#/incident/${encodeURIComponent(incident.id)}` }, `${incident.caseNumber} ${incident.title}`)
        : null,
      h(
        "div",
        { class: "decide" },
        canConfirm
          ? h("button", { type: "button", class: "confirm", onclick: () => void decide(finding, true) }, `${t("confirmFinding")} (c)`)
          : null,
        canReject
          ? h("button", { type: "button", class: "reject", onclick: () => void decide(finding, false) }, `${t("rejectFinding")} (r)`)
          : null,
      ),
    );
  }

  function render(): void {
    replace(list, ...findings.map(item));
  }

  function onKey(event: KeyboardEvent): void {
    const target = event.target as HTMLElement;
    if (["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName) || event.ctrlKey || event.metaKey || event.altKey) return;
    const finding = findings[selected];
    if (event.key === "j" || event.key === "ArrowDown") {
      selected = Math.min(selected + 1, findings.length - 1);
      render();
    } else if (event.key === "k" || event.key === "ArrowUp") {
      selected = Math.max(selected - 1, 0);
      render();
    } else if (event.key === "c" && finding) {
      void decide(finding, true);
    } else if (event.key === "r" && finding) {
      void decide(finding, false);
    } else if (event.key === "d" && finding?.incident) {
      location.hash = `#/incident/${encodeURIComponent(finding.incident.id)}`;
    } else {
      return;
    }
    event.preventDefault();
  }

  document.addEventListener("keydown", onKey);
  replace(
    root,
    h("h1", {}, t("review")),
    h("p", { class: "keys" }, t("reviewKeys")),
    count,
    notice,
    list,
  );
  void load();
  return () => document.removeEventListener("keydown", onKey);
}
