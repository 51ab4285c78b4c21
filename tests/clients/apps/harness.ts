// What every test page runs: the test gives the gateway's URL and a token (window.lighthouse,
// set before the page loads); the page's work answers with data or with what went wrong
// (window.answer), and may report events as they come (window.events).
declare global {
  interface Window {
    lighthouse: { url: string; token: string };
    answer?: { data?: unknown; error?: string };
    events: unknown[];
  }
}

export function run(work: (setting: Window["lighthouse"]) => Promise<unknown>): void {
  window.events = [];
  work(window.lighthouse).then(
    (data) => {
      window.answer = { data };
    },
    (error: unknown) => {
      window.answer = { error: said(error) };
    },
  );
}

function said(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (error instanceof CloseEvent) return `the socket was closed: ${error.code} ${error.reason}`;
  return JSON.stringify(error);
}
