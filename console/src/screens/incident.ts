// One incident: what happened to it, what the model found, and the workflow actions the
// signed-in person may take now. Each action sends the version last read; if someone else
// changed the incident first, the screen shows its new state and says so.

import type { Client, TypedDocumentNode } from "@urql/core";
import { h, replace } from "../dom";
import {
  BureausDocument,
  ByCaseNumberDocument,
  CloseDocument,
  DuplicateCandidatesDocument,
  DispatchDocument,
  IncidentDetailDocument,
  type IncidentDetailQuery,
  MarkDuplicateDocument,
  ReopenDocument,
  ResolveDocument,
  StartWorkDocument,
  TransferDocument,
  VerifyDocument,
} from "../gql/graphql";
import { registered } from "../graph";
import { actionName, reasonName, statusName, t, when } from "../i18n";

type Detail = NonNullable<IncidentDetailQuery["incident"]>;
interface ActionResult {
  __typename: string;
  message?: string;
  incident?: { id: string; version: number; status: string };
}

export function incidentScreen(root: HTMLElement, client: Client, id: string, zh: boolean): () => void {
  const notice = h("p", { class: "notice", role: "status", "aria-live": "polite" });
  let bureaus: { id: string; code: string; nameZh: string; nameEn: string }[] = [];

  async function read(): Promise<{ incident: Detail | null; masked: string | null }> {
    const result = await client.query(registered(IncidentDetailDocument), { id }).toPromise();
    const masked = result.error?.graphQLErrors.find(
      (e) => e.extensions?.code === "PERSONAL_DATA_MASKED",
    );
    if (result.error && !masked) {
      notice.textContent = result.error.message;
    }
    return { incident: result.data?.incident ?? null, masked: masked ? masked.message : null };
  }

  async function show(say = ""): Promise<void> {
    const { incident, masked } = await read();
    if (!incident) {
      replace(root, h("p", {}, h("a", { href: "#/board" }, t("back"))), h("p", { role: "alert" }, t("notFound")));
      return;
    }
    notice.textContent = say;
    render(incident, masked);
  }

  async function act(incident: Detail, action: string, extra: Record<string, unknown>): Promise<void> {
    const input = { id: incident.id, expectedVersion: incident.version, ...extra } as never;
    // Each action's own document; their results share the shape read below.
    const documents: Record<string, TypedDocumentNode<any, any>> = {
      VERIFY: VerifyDocument,
      START_WORK: StartWorkDocument,
      RESOLVE: ResolveDocument,
      REOPEN: ReopenDocument,
      CLOSE: CloseDocument,
      DISPATCH: DispatchDocument,
      TRANSFER: TransferDocument,
      MARK_DUPLICATE: MarkDuplicateDocument,
    };
    const variables: Record<string, unknown> = { input };
    if (action === "DISPATCH") variables.key = crypto.randomUUID();
    const response = await client.mutation(registered(documents[action]), variables).toPromise();
    const result = (response.data as { result?: ActionResult } | undefined)?.result;
    if (!result) {
      notice.textContent = response.error?.message ?? "";
      return;
    }
    if (result.__typename === "VersionConflict") {
      await show(t("conflict"));
      return;
    }
    if (result.incident) {
      await show(`${actionName(action)}: ${t("done")}`);
      return;
    }
    notice.textContent = result.message ?? result.__typename;
  }

  // markDuplicate names the incident by its ID: a typed case number is looked up first (among
  // the incidents the person sees), and wins over the candidate picked.
  async function withDuplicate(
    action: string,
    extra: Record<string, unknown>,
  ): Promise<Record<string, unknown> | null> {
    if (action !== "MARK_DUPLICATE") return extra;
    const { caseNumber, ...rest } = extra;
    if (!caseNumber) {
      if (rest.duplicateOf) return rest;
      notice.textContent = t("pickDuplicate");
      return null;
    }
    const found = await client
      .query(registered(ByCaseNumberDocument), { search: String(caseNumber) })
      .toPromise();
    const node = found.data?.incidents.edges[0]?.node;
    if (!node || node.caseNumber !== String(caseNumber).toUpperCase()) {
      notice.textContent = found.error?.message ?? `${caseNumber}: ${t("notFound")}`;
      return null;
    }
    return { ...rest, duplicateOf: node.id };
  }

  function actionForm(incident: Detail, action: string): HTMLElement {
    const fields: HTMLElement[] = [];
    const values: () => Record<string, unknown> = () => {
      const form = root.querySelector(`form[data-action="${action}"]`) as HTMLFormElement;
      const data = new FormData(form);
      const get = (name: string) => String(data.get(name) ?? "");
      switch (action) {
        case "DISPATCH":
          return { workOrder: { crew: get("crew") }, note: get("note") };
        case "CLOSE":
          return { reason: get("reason"), note: get("note") };
        case "TRANSFER":
          return { toBureauId: get("bureau"), reason: get("reason") };
        case "MARK_DUPLICATE":
          return { duplicateOf: get("duplicateOf"), caseNumber: get("caseNumber").trim(), note: get("note") };
        default:
          return { note: get("note") };
      }
    };
    const field = (name: string, label: string, control: HTMLElement) =>
      h("label", { class: "field" }, h("span", {}, label), control);
    if (action === "DISPATCH") {
      fields.push(field("crew", t("crew"), h("input", { name: "crew", required: true, maxlength: 200 })));
    }
    if (action === "CLOSE") {
      fields.push(
        field(
          "reason",
          t("reason"),
          h(
            "select",
            { name: "reason", required: true },
            ...incident.permittedClosingReasons.map((r) => h("option", { value: r }, reasonName(r))),
          ),
        ),
      );
    }
    if (action === "TRANSFER") {
      fields.push(
        field(
          "bureau",
          t("toBureau"),
          h(
            "select",
            { name: "bureau", required: true },
            ...bureaus
              .filter((b) => b.code !== incident.responsibleBureau?.code)
              .map((b) => h("option", { value: b.id }, zh ? b.nameZh : b.nameEn)),
          ),
        ),
        field("reason", t("reason"), h("input", { name: "reason", required: true, maxlength: 500 })),
      );
    }
    if (action === "MARK_DUPLICATE") {
      // The nearest incidents of the same kind, as the graph offers them; or a case number.
      const choices = h("div", { class: "candidates" }, t("loading"));
      void client
        .query(registered(DuplicateCandidatesDocument), { id: incident.id })
        .toPromise()
        .then((result) => {
          const candidates = result.data?.incident?.duplicateCandidates ?? [];
          replace(
            choices,
            ...(candidates.length
              ? candidates.map((candidate, n) =>
                  h(
                    "label",
                    { class: "candidate" },
                    h("input", {
                      type: "radio",
                      name: "duplicateOf",
                      value: candidate.incident.id,
                      checked: n === 0,
                    }),
                    ` ${candidate.incident.caseNumber} ${candidate.incident.title} · ` +
                      `${Math.round(candidate.distanceMeters)} m · ${statusName(candidate.incident.status)} · ` +
                      when(candidate.incident.reportedAt),
                  ),
                )
              : [h("p", {}, t("noCandidates"))]),
          );
        });
      fields.push(
        h("fieldset", { class: "field" }, h("legend", {}, t("duplicateOf")), choices),
        field(
          "caseNumber",
          t("orCaseNumber"),
          h("input", { name: "caseNumber", maxlength: 100, placeholder: "KH-00000042" }),
        ),
      );
    }
    if (action !== "TRANSFER") {
      fields.push(field("note", t("note"), h("input", { name: "note", maxlength: 4000 })));
    }
    return h(
      "form",
      {
        class: "action",
        "data-action": action,
        onsubmit: (event: Event) => {
          event.preventDefault();
          const submit = (event.target as HTMLFormElement).querySelector("button") as HTMLButtonElement;
          submit.disabled = true;
          void withDuplicate(action, values())
            .then((extra) => (extra ? act(incident, action, extra) : undefined))
            .finally(() => {
              submit.disabled = false;
            });
        },
      },
      ...fields,
      h("button", { type: "submit", "data-action": action }, actionName(action)),
    );
  }

  function bureauName(bureau: { code: string; nameZh: string; nameEn: string } | null | undefined): string {
    return bureau ? (zh ? bureau.nameZh : bureau.nameEn) : "—";
  }

  function link(other: { id: string; caseNumber: string }): HTMLElement {
    return h("a", { href: `#/incident/${encodeURIComponent(other.id)}` }, other.caseNumber);
  }

  function render(incident: Detail, masked: string | null): void {
    const category = incident.category;
    const bureau = incident.responsibleBureau;
    const where = incident.location;
    replace(
      root,
      h("p", {}, h("a", { href: "#/board" }, t("back"))),
      h("h1", {}, `${incident.caseNumber} ${incident.title}`),
      notice,
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, t("status")),
        h("dd", { class: "status", "data-status": incident.status }, statusName(incident.status)),
        h("dt", {}, t("category")),
        h("dd", {}, category ? (zh ? category.nameZh : category.nameEn) : ""),
        h("dt", {}, t("bureau")),
        h("dd", {}, bureau ? (zh ? bureau.nameZh : bureau.nameEn) : ""),
        h("dt", {}, t("reported")),
        h("dd", {}, when(incident.reportedAt)),
        h("dt", {}, t("due")),
        h("dd", { class: incident.overdue ? "overdue" : "" }, when(incident.dueAt)),
        h("dt", {}, t("location")),
        h(
          "dd",
          {},
          `WGS84 ${where.latitude.toFixed(6)}, ${where.longitude.toFixed(6)} · TWD97 ${where.twd97.x.toFixed(1)}, ${where.twd97.y.toFixed(1)}`,
        ),
        h("dt", {}, t("description")),
        h("dd", {}, incident.description),
        h("dt", {}, t("reporter")),
        h(
          "dd",
          { class: "reporter" },
          incident.reporter
            ? [incident.reporter.name, incident.reporter.phone, incident.reporter.email].filter(Boolean).join(" · ")
            : masked
              ? h("span", { class: "masked", title: masked }, t("masked"))
              : "",
        ),
      ),
      h("h2", {}, t("actions")),
      incident.permittedActions.length
        ? h("div", { class: "actions" }, ...incident.permittedActions.map((a) => actionForm(incident, a)))
        : h("p", { class: "no-actions" }, t("noActions")),
      h("h2", {}, t("timeline")),
      h(
        "ol",
        { class: "timeline" },
        ...incident.events.map((e) =>
          h(
            "li",
            {},
            h("time", { datetime: e.occurredAt }, when(e.occurredAt)),
            ` ${e.kind} `,
            e.toStatus ? `→ ${statusName(e.toStatus)} ` : "",
            h("span", { class: "actor" }, e.actor),
            e.note ? ` — ${e.note}` : "",
          ),
        ),
      ),
      h("h2", {}, t("workOrders")),
      h("ul", {}, ...incident.workOrders.map((w) => h("li", {}, `${w.crew} (${w.status})`))),
      h("h2", {}, t("transfers")),
      incident.transfers.length
        ? h(
            "ul",
            { class: "transfers" },
            ...incident.transfers.map((transfer) =>
              h(
                "li",
                {},
                h("time", { datetime: transfer.transferredAt }, when(transfer.transferredAt)),
                ` ${bureauName(transfer.fromBureau)} → ${bureauName(transfer.toBureau)} — ${transfer.reason} `,
                h("span", { class: "actor" }, transfer.actor),
              ),
            ),
          )
        : h("p", {}, t("noTransfers")),
      h("h2", {}, t("duplicatesTitle")),
      h(
        "ul",
        { class: "duplicates" },
        incident.duplicateOf
          ? h("li", {}, `${t("duplicateOf")} `, link(incident.duplicateOf))
          : null,
        ...incident.duplicates.map((duplicate) => h("li", {}, `${t("duplicatedBy")} `, link(duplicate))),
      ),
      h("h2", {}, t("detections")),
      h(
        "ul",
        { class: "detections" },
        ...incident.detections.map((d) =>
          h(
            "li",
            {},
            d.frame?.imageLink
              ? h("img", {
                  src: d.frame.imageLink.url,
                  alt: `${t("evidence")} ${d.category?.code ?? ""} ${when(d.frame.capturedAt)}`,
                  loading: "lazy",
                })
              : h("p", { class: "masked" }, t("imageMasked")),
            h(
              "p",
              {},
              `${d.category?.code ?? ""} · ${t("confidence")} ${(d.confidence * 100).toFixed(0)}% · ${d.outcome} · ${when(d.detectedAt)}`,
              d.note ? ` — ${d.note}` : "",
            ),
            d.analysis
              ? h("p", { class: "model" }, `${d.analysis.model}@${d.analysis.modelVersion} · ${d.analysis.promptVersion}`)
              : null,
          ),
        ),
      ),
    );
  }

  replace(root, h("p", {}, t("loading")));
  void (async () => {
    const found = await client.query(registered(BureausDocument), {}).toPromise();
    bureaus = found.data?.bureaus ?? [];
    await show();
  })();
  return () => undefined;
}
