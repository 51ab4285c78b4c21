// The board: the incidents the signed-in person may see, filtered and paged, kept current by
// the incidentChanged subscription.

import type { Client } from "@urql/core";
import { h, replace } from "../dom";
import {
  BoardChangesDocument,
  BoardDocument,
  BureausDocument,
  FindingsLiveDocument,
  type BoardIncidentFragment,
  type IncidentFilterInput,
  type StatusClass,
} from "../gql/graphql";
import { registered } from "../graph";
import { actionName, statusName, t, when } from "../i18n";

const PAGE = 50;

export interface Category {
  code: string;
  nameZh: string;
  nameEn: string;
}

interface Filters {
  statusClass: StatusClass | "";
  category: string;
  bureau: string;
  overdue: boolean;
  text: string;
}

// The graph's own bound on a search (IncidentFilterInput.search).
const SEARCH_LENGTH = 100;
const TYPING_PAUSE_MS = 300;

export function boardScreen(
  root: HTMLElement,
  client: Client,
  categories: Category[],
  zh: boolean,
): () => void {
  const filters: Filters = { statusClass: "OPEN", category: "", bureau: "", overdue: false, text: "" };
  let rows: BoardIncidentFragment[] = [];
  let cursor: string | null = null;
  let hasMore = false;
  let total = 0;
  let loading = false;

  const count = h("p", { class: "count", "aria-live": "polite" });
  const body = h("tbody");
  const more = h("button", { type: "button", class: "more", onclick: () => load(false) }, t("more"));
  const message = h("p", { class: "message", role: "status" });
  const findings = h("ol", { class: "findings", "aria-live": "polite" });

  const statusSelect = h(
    "select",
    { id: "filter-status", onchange: (e: Event) => set("statusClass", (e.target as HTMLSelectElement).value) },
    h("option", { value: "" }, t("all")),
    h("option", { value: "OPEN", selected: true }, t("open")),
    h("option", { value: "FIXED" }, t("fixed")),
    h("option", { value: "CLOSED" }, t("closed")),
  );
  const categorySelect = h(
    "select",
    { id: "filter-category", onchange: (e: Event) => set("category", (e.target as HTMLSelectElement).value) },
    h("option", { value: "" }, t("all")),
    ...categories.map((c) => h("option", { value: c.code }, zh ? c.nameZh : c.nameEn)),
  );
  const bureauSelect = h(
    "select",
    { id: "filter-bureau", onchange: (e: Event) => set("bureau", (e.target as HTMLSelectElement).value) },
    h("option", { value: "" }, t("all")),
  );
  void client
    .query(registered(BureausDocument), {})
    .toPromise()
    .then((result) => {
      for (const bureau of result.data?.bureaus ?? []) {
        bureauSelect.append(h("option", { value: bureau.code }, zh ? bureau.nameZh : bureau.nameEn));
      }
    });
  const overdueBox = h("input", {
    id: "filter-overdue",
    type: "checkbox",
    onchange: (e: Event) => set("overdue", (e.target as HTMLInputElement).checked),
  });
  // The search is the graph's (words in titles and descriptions, or a case number), sent when
  // typing pauses.
  let typing: ReturnType<typeof setTimeout> | undefined;
  const textBox = h("input", {
    id: "filter-text",
    type: "search",
    maxlength: String(SEARCH_LENGTH),
    placeholder: t("search"),
    oninput: (e: Event) => {
      const text = (e.target as HTMLInputElement).value.trim();
      clearTimeout(typing);
      typing = setTimeout(() => {
        if (text !== filters.text) set("text", text);
      }, TYPING_PAUSE_MS);
    },
  });

  function set<K extends keyof Filters>(name: K, value: string | boolean): void {
    (filters as unknown as Record<string, string | boolean>)[name] = value;
    void load(true);
  }

  function graphFilter(): IncidentFilterInput {
    const filter: IncidentFilterInput = {};
    if (filters.statusClass) filter.statusClass = [filters.statusClass];
    if (filters.category) filter.category = [filters.category];
    if (filters.bureau) filter.bureauCode = [filters.bureau];
    if (filters.overdue) filter.overdue = true;
    if (filters.text) filter.search = filters.text;
    return filter;
  }

  let again = false; // a filter changed while a page was loading
  async function load(fresh: boolean): Promise<void> {
    if (loading) {
      again = again || fresh;
      return;
    }
    loading = true;
    message.textContent = t("loading");
    const result = await client
      .query(registered(BoardDocument), {
        first: PAGE,
        after: fresh ? null : cursor,
        filter: graphFilter(),
      })
      .toPromise();
    loading = false;
    if (again) {
      again = false;
      void load(true);
      return;
    }
    if (result.error || !result.data) {
      message.textContent = result.error?.message ?? "";
      return;
    }
    const page = result.data.incidents;
    const nodes = page.edges.map((edge) => edge.node);
    rows = fresh ? nodes : [...rows, ...nodes];
    cursor = page.pageInfo.endCursor ?? null;
    hasMore = page.pageInfo.hasNextPage;
    total = page.totalCount;
    message.textContent = "";
    render();
  }

  function matches(incident: BoardIncidentFragment): boolean {
    if (filters.statusClass && incident.statusClass !== filters.statusClass) return false;
    if (filters.category && incident.category?.code !== filters.category) return false;
    if (filters.bureau && incident.responsibleBureau?.code !== filters.bureau) return false;
    if (filters.overdue && !incident.overdue) return false;
    return true;
  }

  // A new incident shown live under a search: its title holds every word, or it is the case
  // searched for (the graph also searches descriptions, which the board does not read; such an
  // incident appears when the page is next loaded).
  function searched(incident: BoardIncidentFragment): boolean {
    if (!filters.text) return true;
    const title = incident.title.toLowerCase();
    const words = filters.text.toLowerCase().split(/\s+/);
    return words.every((word) => title.includes(word)) || incident.caseNumber === filters.text.toUpperCase();
  }

  function render(): void {
    count.textContent = `${total} ${t("incidents")}`;
    replace(body, ...rows.map(row));
    more.hidden = !hasMore;
  }

  function row(incident: BoardIncidentFragment): HTMLElement {
    const category = incident.category;
    const bureau = incident.responsibleBureau;
    return h(
      "tr",
      { "data-id": incident.id, "data-status": incident.status },
      h("td", {}, h("a", { href: `#/incident/${encodeURIComponent(incident.id)}` }, incident.caseNumber)),
      h("td", {}, incident.title),
      h("td", { class: `status status-${incident.status.toLowerCase()}` }, statusName(incident.status)),
      h("td", {}, category ? (zh ? category.nameZh : category.nameEn) : ""),
      h("td", {}, bureau ? (zh ? bureau.nameZh : bureau.nameEn) : ""),
      h("td", {}, when(incident.reportedAt)),
      h(
        "td",
        { class: incident.overdue ? "due overdue" : "due" },
        when(incident.dueAt),
        incident.overdue ? h("span", { class: "badge" }, ` ${t("overdue")}`) : null,
      ),
      h("td", { class: "permitted" }, incident.permittedActions.map(actionName).join("、")),
    );
  }

  replace(
    root,
    h("h1", {}, t("board")),
    h(
      "form",
      { class: "filters", role: "search", onsubmit: (e: Event) => e.preventDefault() },
      h("label", { for: "filter-status" }, t("statusClass")),
      statusSelect,
      h("label", { for: "filter-category" }, t("category")),
      categorySelect,
      h("label", { for: "filter-bureau" }, t("bureau")),
      bureauSelect,
      h("label", { for: "filter-overdue", class: "check" }, overdueBox, t("onlyOverdue")),
      h("label", { for: "filter-text", class: "visually-hidden" }, t("search")),
      textBox,
    ),
    h("h2", { class: "findings-title" }, t("latestFindings")),
    findings,
    count,
    message,
    h(
      "table",
      { class: "board" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ...["#", t("subject"), t("status"), t("category"), t("bureau"), t("reported"), t("due"), t("actions")].map(
            (label) => h("th", { scope: "col" }, label),
          ),
        ),
      ),
      body,
    ),
    more,
  );
  void load(true);

  // Live: a change to a shown incident replaces its row; a new one that matches is added on top.
  const live = client.subscription(registered(BoardChangesDocument), {}).subscribe((result) => {
    const change = result.data?.incidentChanged;
    if (!change) return;
    const incident = change.incident;
    const at = rows.findIndex((r) => r.id === incident.id);
    if (at >= 0) {
      if (matches(incident)) rows[at] = incident;
      else {
        rows.splice(at, 1);
        total -= 1;
      }
    } else if (matches(incident) && searched(incident)) {
      rows.unshift(incident);
      total += 1;
    }
    render();
  });
  // What the cameras' models find, as the workers record it (those the person may see).
  const found = client.subscription(registered(FindingsLiveDocument), {}).subscribe((result) => {
    const detection = result.data?.detectionAdded;
    if (!detection) return;
    const category = detection.category;
    const incident = detection.incident;
    findings.prepend(
      h(
        "li",
        { "data-id": detection.id },
        `${when(detection.detectedAt)} ${detection.camera?.code ?? ""} `,
        h("strong", {}, category ? (zh ? category.nameZh : category.nameEn) : ""),
        ` ${t("confidence")} ${(detection.confidence * 100).toFixed(0)}% `,
        incident
          ? h("a", { href: `#/incident/${encodeURIComponent(incident.id)}` }, incident.caseNumber)
          : null,
      ),
    );
    while (findings.children.length > 5) findings.lastElementChild?.remove();
  });
  return () => {
    live.unsubscribe();
    found.unsubscribe();
  };
}
