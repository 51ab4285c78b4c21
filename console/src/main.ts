// The console's shell: its settings from the gateway, signing in, the signed-in person's header,
// and the screens by the address's hash (#/board, #/incident/ID).

import {
  beginSignIn,
  completeSignIn,
  refresh,
  revoke,
  type Session,
  type SignInConfig,
  SignInError,
} from "./auth";
import { h, replace } from "./dom";
import { ViewerDocument } from "./gql/graphql";
import { connect, type Graph, registered } from "./graph";
import { currentLanguage, setLanguage, t } from "./i18n";
import { auditScreen } from "./screens/audit";
import { boardScreen, type Category } from "./screens/board";
import { incidentScreen } from "./screens/incident";
import { licensingScreen } from "./screens/licensing";
import { modelsScreen } from "./screens/models";
import { reviewScreen } from "./screens/review";

interface Config {
  graphql: string;
  tiles: string | null;
  outline: string | null;
  redirectUri: string;
  signIn: SignInConfig | null;
  environment: string;
}

const app = document.getElementById("app") as HTMLElement;
let session: Session | null = null;
let graph: Graph | null = null;
let leave: () => void = () => undefined;

function signedOut(config: Config, why = ""): void {
  session = null;
  graph?.socket.dispose();
  graph = null;
  leave();
  document.title = t("title");
  replace(
    app,
    h(
      "main",
      { class: "sign-in", id: "main" },
      h("h1", {}, t("title")),
      why ? h("p", { role: "alert", class: "notice" }, why) : null,
      config.signIn
        ? h(
            "button",
            {
              type: "button",
              id: "sign-in",
              onclick: () => void beginSignIn(config.signIn as SignInConfig, config.redirectUri),
            },
            t("signIn"),
          )
        : h("p", { role: "alert" }, t("noSignIn")),
    ),
  );
}

function keepFresh(config: Config): void {
  if (!session?.refreshToken || !config.signIn) return;
  const due = Math.max(5_000, session.expiresAt - Date.now() - 60_000);
  window.setTimeout(() => {
    if (!session || !config.signIn) return;
    refresh(config.signIn, session)
      .then((renewed) => {
        session = renewed;
        keepFresh(config);
      })
      .catch(() => signedOut(config, t("sessionEnded")));
  }, due);
}

async function signedIn(config: Config): Promise<void> {
  const live = h("span", { class: "live", "aria-live": "polite" });
  graph = connect(
    config.graphql,
    () => session?.accessToken ?? "",
    () => signedOut(config, t("sessionEnded")),
    (state) => {
      live.textContent = state === "connected" ? t("live") : t("offline");
    },
  );
  const viewer = await graph.client.query(registered(ViewerDocument), {}).toPromise();
  if (!viewer.data) {
    signedOut(config, viewer.error?.message ?? t("sessionEnded"));
    return;
  }
  const me = viewer.data.me;
  const categories: Category[] = viewer.data.categories;
  const main = h("main", { id: "main" });
  const zh = currentLanguage() === "zh-TW";
  replace(
    app,
    h(
      "header",
      { class: "top" },
      h("a", { class: "brand", href: "#/board" }, t("title")),
      h(
        "nav",
        { "aria-label": "main" },
        me.scopes.includes("incidents:read") ? h("a", { href: "#/board" }, t("board")) : null,
        me.scopes.includes("incidents:read") ? h("a", { href: "#/map" }, t("map")) : null,
        me.scopes.includes("incidents:write") ? h("a", { href: "#/review" }, t("review")) : null,
        me.scopes.includes("models:admin") ? h("a", { href: "#/models" }, t("models")) : null,
        me.scopes.includes("licensing:admin") ? h("a", { href: "#/licensing" }, t("licensing")) : null,
        me.scopes.includes("audit:read") ? h("a", { href: "#/audit" }, t("audit")) : null,
      ),
      live,
      h("span", { class: "who", "data-subject": me.subject }, `${t("signedInAs")} ${me.subject}${me.bureauCode ? ` (${me.bureauCode})` : ""}`),
      h(
        "button",
        {
          type: "button",
          class: "language",
          onclick: () => {
            setLanguage(currentLanguage() === "zh-TW" ? "en" : "zh-TW");
            void signedIn(config);
          },
        },
        t("language"),
      ),
      h(
        "button",
        {
          type: "button",
          id: "sign-out",
          onclick: () => {
            const ending = session;
            signedOut(config);
            if (ending && config.signIn) void revoke(config.signIn, ending);
          },
        },
        t("signOut"),
      ),
    ),
    main,
  );
  const route = (): void => {
    leave();
    const client = (graph as Graph).client;
    const match = /^#\/incident\/(.+)$/.exec(location.hash);
    const reads = me.scopes.includes("incidents:read");
    if (match) {
      leave = incidentScreen(main, client, decodeURIComponent(match[1]), zh);
    } else if (location.hash === "#/licensing" || (!reads && me.scopes.includes("licensing:admin"))) {
      leave = licensingScreen(main, client, () => session?.accessToken ?? "");
    } else if (location.hash === "#/models" && me.scopes.includes("models:admin")) {
      leave = modelsScreen(main, client);
    } else if (location.hash === "#/map" && reads) {
      // MapLibre is loaded only when the map is opened: the board's script stays small.
      const mine = main;
      let left = false;
      leave = () => {
        left = true;
      };
      void import("./screens/map").then(({ mapScreen }) => {
        if (left) return;
        leave = mapScreen(mine, client, config.tiles, config.outline);
      });
    } else if (location.hash === "#/review" && reads) {
      leave = reviewScreen(main, client, zh);
    } else if (location.hash === "#/audit" || (!reads && me.scopes.includes("audit:read"))) {
      leave = auditScreen(main, client);
    } else {
      leave = boardScreen(main, client, categories, zh);
    }
  };
  window.onhashchange = route;
  route();
}

async function start(): Promise<void> {
  setLanguage(currentLanguage());
  document.title = t("title");
  const config = (await (await fetch("/console/config.json")).json()) as Config;
  if (config.signIn) {
    try {
      const back = await completeSignIn(config.signIn, config.redirectUri);
      if (back) {
        session = back.session;
        if (back.back) location.hash = back.back;
        keepFresh(config);
      }
    } catch (error) {
      signedOut(config, `${t("signInFailed")}: ${error instanceof SignInError ? error.message : String(error)}`);
      return;
    }
  }
  if (!session) {
    signedOut(config);
    return;
  }
  await signedIn(config);
}

void start();
