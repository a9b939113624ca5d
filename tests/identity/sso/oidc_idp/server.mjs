// A real OpenID Connect provider (npm oidc-provider) for Kanvaro's SSO tests, on loopback.
//
// Configuration comes from the environment: PORT, ISSUER, JWKS (the signing keys, JSON; the
// first one signs). Clients register themselves (RFC 7591 dynamic registration), so each test
// registers the redirect URI of the provider it just created. Interactions (login, consent)
// are answered here with no page: the account that signs in is the one the test named last
// with POST /test/next ({accountId, claims, amr, acr}). Back-channel logout tokens the
// provider sends to /test/bcl are kept and served at GET /test/logout-tokens, for the test
// to deliver to Kanvaro (the app under test runs in-process, not on a port).
import http from "node:http";
import Provider from "oidc-provider";

const port = Number(process.env.PORT || 3010);
const issuer = process.env.ISSUER || `http://127.0.0.1:${port}`;
const jwks = JSON.parse(process.env.JWKS);

const accounts = new Map();
let next = null;
const logoutTokens = [];

const provider = new Provider(issuer, {
  jwks,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = `<!doctype html><html><body>${form}<button form="op.logoutForm" name="logout" value="yes">Yes</button></body></html>`;
      },
    },
  },
  claims: {
    // acr and amr under openid: the ID token carries them (point 6: trust the IdP's MFA).
    openid: ["sub", "acr", "amr", "auth_time"],
    email: ["email", "email_verified"],
    profile: ["given_name", "family_name", "groups"],
  },
  scopes: ["openid", "email", "profile", "offline_access"],
  async findAccount(ctx, id) {
    const account = accounts.get(id);
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account.claims }; } };
  },
  async loadExistingGrant(ctx) {
    // Consent is implied: the grant covers what the client asked for.
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope("openid email profile");
    grant.addOIDCClaims(["email", "email_verified", "given_name", "family_name", "groups"]);
    await grant.save();
    return grant;
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // Its outgoing requests (back-channel logout) go to loopback, which the SSRF guard of its
  // default dispatcher refuses: this test IdP talks to 127.0.0.1 only, so no guard here.
  fetch: (url, options) => {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
  ttl: { Session: 3600, Interaction: 600, Grant: 3600, IdToken: 300, AccessToken: 300, AuthorizationCode: 60 },
});
provider.proxy = false;
// Visible in the test's IdP log: what became of each back-channel logout.
provider.on("backchannel.error", (ctx, error, client) => {
  process.stdout.write(`backchannel.error ${client && client.clientId}: ${error && error.message} ${error && error.cause}\n`);
});
provider.on("backchannel.success", (ctx, client) => {
  process.stdout.write(`backchannel.success ${client && client.clientId}\n`);
});
provider.on("end_session.error", (ctx, error) => {
  process.stdout.write(`end_session.error: ${error && error.message}\n`);
});

function readJson(req) {
  return new Promise((resolve, reject) => {
    let body = "";
    req.on("data", (chunk) => { body += chunk; });
    req.on("end", () => { try { resolve(JSON.parse(body || "{}")); } catch (e) { reject(e); } });
  });
}

function send(res, status, value) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(value));
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (req.method === "POST" && url.pathname === "/test/next") {
      const body = await readJson(req);
      accounts.set(body.accountId, { claims: body.claims || {} });
      next = body;
      return send(res, 200, { ok: true });
    }
    if (req.method === "POST" && url.pathname === "/test/bcl") {
      // Registered as the clients' backchannel_logout_uri: keep the token for the test.
      let body = "";
      for await (const chunk of req) body += chunk;
      logoutTokens.push(new URLSearchParams(body).get("logout_token"));
      res.writeHead(200);
      return res.end();
    }
    if (req.method === "GET" && url.pathname === "/test/logout-tokens") {
      return send(res, 200, logoutTokens.splice(0));
    }
    if (url.pathname.startsWith("/interaction/")) {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === "login") {
        if (!next) return send(res, 409, { error: "no account named for the next sign-in" });
        const login = { accountId: next.accountId };
        if (next.amr) login.amr = next.amr;
        if (next.acr) login.acr = next.acr;
        return provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
      }
      return provider.interactionFinished(req, res, {}, { mergeWithLastSubmission: true });
    }
    return callback(req, res);
  } catch (error) {
    send(res, 500, { error: String(error && error.message) });
  }
});
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening ${port}\n`);
});
