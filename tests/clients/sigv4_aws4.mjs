// Signs requests to Keyport with the aws4 npm package (as Node integrations
// of SigV4 APIs do) and sends them with fetch (tests/api/sigv4.rs).
//
// Reads KEYPORT_BASE_URL, KEYPORT_ACCESS_KEY, KEYPORT_SECRET_KEY,
// KEYPORT_REGION and KEYPORT_SERVICE; prints one JSON object,
// {check: [status, expected]}, on its last line. Never prints the secret.
import aws4 from "aws4";

const base = new URL(process.env.KEYPORT_BASE_URL);
const credentials = {
  accessKeyId: process.env.KEYPORT_ACCESS_KEY,
  secretAccessKey: process.env.KEYPORT_SECRET_KEY,
};
const region = process.env.KEYPORT_REGION;
const service = process.env.KEYPORT_SERVICE;

async function send(method, path, body, headers = {}, creds = credentials) {
  const options = aws4.sign(
    { host: base.host, method, path, body, headers: { ...headers }, region, service },
    creds,
  );
  const response = await fetch(`${base.protocol}//${base.host}${options.path}`, {
    method,
    headers: options.headers,
    body,
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: response.status, json, text };
}

const checks = {};
const failures = [];
function check(name, response, expected, predicate) {
  const ok = response.status === expected && (!predicate || predicate(response.json));
  checks[name] = [response.status, ok ? expected : `${expected} and its body`];
  if (!ok) failures.push(`${name}: ${response.status} ${response.text.slice(0, 600)}`);
}

check("GET whoami", await send("GET", "/api/v1/whoami"), 200, (b) => b.credential === "sigv4");
const marker = "aws4 naïve / 100% & more";
check(
  "POST push with a body",
  await send("POST", "/api/v1/webhooks/aws4", JSON.stringify({ marker }), {
    "Content-Type": "application/json",
  }),
  201,
);
// aws4 parses the query and encodes it the AWS way itself.
check(
  "GET with a query that needs encoding",
  await send("GET", `/api/v1/keys?label=${encodeURIComponent("env=prod & eu/1")}`),
  200,
  (b) => Array.isArray(b.keys) && b.keys.length === 0,
);
check(
  "GET the pushed record",
  await send("GET", "/api/v1/reports/aws4?limit=5"),
  200,
  (b) => b.records[0].data.marker === marker,
);
const keys = (await send("GET", "/api/v1/keys")).json.keys;
const other = keys.find((k) => k.client_id !== credentials.accessKeyId);
check(
  "POST without a body",
  await send("POST", `/api/v1/keys/${other.id}/disable`),
  200,
  (b) => b.status === "disabled",
);
check(
  "POST without a body, signing X-Amz-Content-Sha256",
  await send("POST", `/api/v1/keys/${other.id}/enable`, undefined, {
    "X-Amz-Content-Sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  }),
  200,
  (b) => b.status === "active",
);
check(
  "a wrong secret",
  await send("GET", "/api/v1/whoami", undefined, {}, { ...credentials, secretAccessKey: "kps_nope" }),
  401,
  (b) => b.error === "signature_mismatch",
);

// A push with an Idempotency-Key: aws4 signs every header it is given but a
// few hop-by-hop ones, so the key is signed (Keyport refuses an unsigned
// one). The same signed request sent again is refused: a signed write is
// accepted once. Signed again (a numbered attempt changes a signed header)
// with the same key, it answers the original response and stores nothing new.
function signedPush(attempt) {
  return aws4.sign(
    {
      host: base.host,
      method: "POST",
      path: "/api/v1/webhooks/retried",
      body: JSON.stringify({ invoice: 7 }),
      headers: {
        "Content-Type": "application/json",
        "Idempotency-Key": "invoice-7",
        "amz-sdk-request": `attempt=${attempt}; max=3`,
      },
      region,
      service,
    },
    credentials,
  );
}
async function sendSigned(options) {
  const response = await fetch(`${base.protocol}//${base.host}${options.path}`, {
    method: options.method,
    headers: options.headers,
    body: options.body,
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: response.status, json, text, headers: response.headers };
}
const firstAttempt = signedPush(1);
const stored = await sendSigned(firstAttempt);
check(
  "POST with a signed Idempotency-Key",
  stored,
  201,
  (b) => /SignedHeaders=[^,]*idempotency-key/.test(firstAttempt.headers.Authorization) && b.count === 1,
);
check(
  "the same signed POST sent again",
  await sendSigned(firstAttempt),
  401,
  (b) => b.error === "signature_replayed",
);
const retried = await sendSigned(signedPush(2));
check(
  "a retry signed again with the same Idempotency-Key",
  retried,
  201,
  (b) =>
    retried.headers.get("idempotent-replayed") === "true" &&
    JSON.stringify(b.ids) === JSON.stringify(stored.json.ids),
);
check(
  "the retried push stored once",
  await send("GET", "/api/v1/reports/retried?limit=10"),
  200,
  (b) => b.records.length === 1,
);

for (const failure of failures) console.error(failure);
console.log(JSON.stringify(checks));
