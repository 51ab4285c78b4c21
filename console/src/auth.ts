// Signing in: OpenID Connect's authorization code flow with PKCE, as a public client. The
// access token is held in memory only (never in storage a script of another page could read);
// the verifier and state wait in sessionStorage for the redirect back, then are removed. A
// refresh token, when the sign-on issues one, renews the access token before it expires.

export interface SignInConfig {
  authorizationEndpoint: string;
  tokenEndpoint: string;
  revocationEndpoint: string | null;
  clientId: string;
  scope: string;
  resource: string | null;
  demo: boolean;
}

export interface Session {
  accessToken: string;
  expiresAt: number;
  refreshToken?: string;
}

const PENDING = "lighthouse.sign-in";

function base64url(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomText(bytes: number): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

async function challengeOf(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** Leave for the sign-on's authorization endpoint; it sends the browser back with a code. */
export async function beginSignIn(config: SignInConfig, redirectUri: string): Promise<void> {
  const verifier = randomText(48);
  const state = randomText(16);
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, back: location.hash }));
  const url = new URL(config.authorizationEndpoint);
  const params: Record<string, string> = {
    response_type: "code",
    client_id: config.clientId,
    redirect_uri: redirectUri,
    scope: config.scope,
    state,
    code_challenge: await challengeOf(verifier),
    code_challenge_method: "S256",
  };
  if (config.resource) params.resource = config.resource;
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  location.assign(url.toString());
}

export class SignInError extends Error {}

/** Back from the sign-on: the code redeemed for tokens, or null when this is no such return. */
export async function completeSignIn(
  config: SignInConfig,
  redirectUri: string,
): Promise<{ session: Session; back: string } | null> {
  const query = new URLSearchParams(location.search);
  const code = query.get("code");
  const error = query.get("error");
  if (!code && !error) return null;
  const pending = sessionStorage.getItem(PENDING);
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, "", location.pathname + location.hash);
  if (error) throw new SignInError(`${error}: ${query.get("error_description") ?? ""}`);
  if (!pending) throw new SignInError("no sign-in was started in this tab");
  const { verifier, state, back } = JSON.parse(pending) as {
    verifier: string;
    state: string;
    back: string;
  };
  if (query.get("state") !== state) throw new SignInError("the sign-in's state does not match");
  const session = await tokenRequest(config, {
    grant_type: "authorization_code",
    code: code as string,
    redirect_uri: redirectUri,
    client_id: config.clientId,
    code_verifier: verifier,
  });
  return { session, back };
}

export async function refresh(config: SignInConfig, session: Session): Promise<Session> {
  if (!session.refreshToken) throw new SignInError("no refresh token");
  return tokenRequest(config, {
    grant_type: "refresh_token",
    refresh_token: session.refreshToken,
    client_id: config.clientId,
  });
}

async function tokenRequest(config: SignInConfig, form: Record<string, string>): Promise<Session> {
  const response = await fetch(config.tokenEndpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(form),
  });
  const body = (await response.json()) as Record<string, unknown>;
  if (!response.ok || typeof body.access_token !== "string") {
    throw new SignInError(`${body.error ?? response.status}: ${body.error_description ?? ""}`);
  }
  const expiresIn = typeof body.expires_in === "number" ? body.expires_in : 300;
  return {
    accessToken: body.access_token,
    expiresAt: Date.now() + expiresIn * 1000,
    refreshToken: typeof body.refresh_token === "string" ? body.refresh_token : undefined,
  };
}

/** Signing out revokes the token (RFC 7009, as a public client) where the sign-on allows it, so
 * every tab and socket holding it stops at once; the page forgets it either way. */
export async function revoke(config: SignInConfig, session: Session): Promise<void> {
  if (!config.revocationEndpoint) return;
  try {
    await fetch(config.revocationEndpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        token: session.accessToken,
        token_type_hint: "access_token",
        client_id: config.clientId,
      }),
    });
  } catch {
    // Unreachable: the token still expires on its own.
  }
}
