-- A trusted issuer's audience belongs to one company: no two companies may
-- trust the same issuer for the same audience. Without this, a company
-- could trust another company's issuer and audience (with a JWKS URL that
-- serves a copy of the issuer's keys) and have rules of its own admit, or
-- block, the other company's tokens. The audience is what a token says it
-- is meant for, so it is what decides the company.
--
-- Rows that already share an issuer and audience with an older row of
-- another company keep everything but their audience, which is marked so
-- that no token can name it: the company's admin sees it in the issuer
-- list and trusts the issuer again under an audience of its own. The
-- oldest row keeps the audience.
UPDATE trusted_issuers
SET audience = audience || ' (taken by another company: trust this issuer again with an audience of your own) ' || id
WHERE EXISTS (
    SELECT 1 FROM trusted_issuers older
    WHERE older.issuer = trusted_issuers.issuer
      AND older.audience = trusted_issuers.audience
      AND (older.created_at < trusted_issuers.created_at
           OR (older.created_at = trusted_issuers.created_at AND older.id < trusted_issuers.id))
);

CREATE UNIQUE INDEX trusted_issuers_audience_unique ON trusted_issuers (issuer, audience);
