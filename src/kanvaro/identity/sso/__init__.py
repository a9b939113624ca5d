"""Single sign-on: identity providers (SAML, OIDC, OAuth2), JIT provisioning, SSO sessions."""
