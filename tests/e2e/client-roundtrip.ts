// A client generated from the committed openapi/openapi.json (openapi-typescript types,
// openapi-fetch calls): it must compile against the spec and round-trip real calls.
// Usage: node dist/client-roundtrip.js <gateway-url> <caller-token>
import createClient from "openapi-fetch";
import type { paths } from "./generated/schema.js";

declare const process: { argv: string[]; exit(code: number): never };

const [baseUrl, token] = process.argv.slice(2);
if (!baseUrl || !token) {
  throw new Error("usage: client-roundtrip <gateway-url> <caller-token>");
}
const customerId = "7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745";
const client = createClient<paths>({
  baseUrl,
  headers: { Authorization: `Bearer ${token}` },
});

function check(condition: boolean, message: string): void {
  if (!condition) {
    throw new Error(`client round trip: ${message}`);
  }
}

const created = await client.POST("/v1/customers/{customerId}/qualifications", {
  params: {
    path: { customerId },
    header: { "Idempotency-Key": `client-roundtrip-${Date.now()}` },
  },
  body: { qualification: "Education", educationSegment: "K12", website: "contoso.edu" },
});
check(created.response.status === 202, `POST answered ${created.response.status}`);
check(created.data !== undefined, "POST has a body");
const accepted = created.data!;
// Typed fields, as the spec names them.
const vetting: string | undefined = accepted.vettingStatus;
check(accepted.customerId === customerId, "customerId echoed");
check(accepted.qualification === "Education", "qualification echoed");
check(vetting === "InReview", `vettingStatus ${vetting}`);
check(/^[0-9a-f-]{36}$/.test(accepted.requestId), "requestId is a GUID");

const listed = await client.GET("/v1/customers/{customerId}/qualifications", {
  params: { path: { customerId } },
});
check(listed.response.status === 200, `GET answered ${listed.response.status}`);
check(
  listed.data?.qualifications.some((q) => q.qualification === "Education") ?? false,
  "the new qualification is listed",
);

const refused = await client.POST("/v1/customers/{customerId}/qualifications", {
  params: { path: { customerId: "not-a-guid" } },
  body: { qualification: "StateOwnedEntity" },
});
check(refused.response.status === 400, `bad customerId answered ${refused.response.status}`);
check(refused.error?.field === "customerId", "the problem names the field");

console.log(
  `client round trip ok: ${accepted.qualification} ${vetting}, request ${accepted.requestId}`,
);
