// Swagger UI as a user meets it, in headless Chromium with no outside network: the three
// operations are there, Authorize takes a sandbox caller token, "Try it out" on the POST
// answers 202 with vettingStatus InReview, and the sandbox's webhook receiver then shows the
// signed qualification.approved.
// Usage: node swagger-ui.mjs <gateway-url> <screenshot.png>
import { chromium } from "playwright-core";

const [baseUrl, screenshot] = process.argv.slice(2);
if (!baseUrl || !screenshot) {
  throw new Error("usage: node swagger-ui.mjs <gateway-url> <screenshot.png>");
}
const origin = new URL(baseUrl).origin;
const customerId = "0b3e6f1a-5c2d-4e8f-9a7b-1c2d3e4f5a6b";
const step = (message) => console.log(`swagger-ui: ${message}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1600 } });
  // No outside network: anything not served by the gateway fails the test.
  const outside = [];
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.origin === origin) {
      return route.continue();
    }
    outside.push(url.href);
    return route.abort();
  });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);

  await page.goto(`${baseUrl}/swagger-ui/`);
  await page.locator(".opblock").first().waitFor();
  for (const [method, path] of [
    ["post", "/v1/customers/{customerId}/qualifications"],
    ["get", "/v1/customers/{customerId}/qualifications"],
    ["get", "/v1/validation-codes"],
  ]) {
    await page.locator(`.opblock-${method} [data-path="${path}"]`).first().waitFor();
  }
  step("the three operations are listed");

  const issued = await fetch(`${baseUrl}/sandbox/caller-token`, { method: "POST" });
  const { accessToken } = await issued.json();
  await page.locator("button.authorize").first().click();
  const modal = page.locator(".modal-ux");
  await modal.locator("input").first().fill(accessToken);
  await modal.locator("button.authorize").click();
  await modal.locator("button.btn-done").click();
  step("authorized with a sandbox caller token");

  const operation = page.locator("#operations-qualifications-create_qualification");
  await operation.locator(".opblock-summary").click();
  await operation.locator("button.try-out__btn").click();
  await operation.locator('input[placeholder="customerId"]').fill(customerId);
  await operation
    .locator("textarea.body-param__text")
    .fill(JSON.stringify({ qualification: "Education", educationSegment: "K12", website: "contoso.edu" }));
  await operation.locator("button.execute").click();
  const status = operation.locator(".live-responses-table .response .response-col_status").first();
  await status.waitFor();
  const code = (await status.innerText()).trim();
  const body = await operation
    .locator(".live-responses-table .response .response-col_description pre")
    .first()
    .innerText();
  if (!code.startsWith("202") || !body.includes("InReview")) {
    throw new Error(`Try it out answered ${code}: ${body}`);
  }
  step(`Try it out: ${code} with vettingStatus InReview`);
  const requestId = JSON.parse(body).id;

  // The person then watches the sandbox's receiver: with the shipped settings (30 s of
  // simulated vetting, polls every 10 s) a signed qualification.approved arrives within a
  // minute, with nothing else running.
  const receiver = page.locator("#operations-sandbox-list_received_webhooks");
  await receiver.locator(".opblock-summary").click();
  await receiver.locator("button.try-out__btn").click();
  const deadline = Date.now() + 75_000;
  let seen = "";
  for (;;) {
    await receiver.locator("button.execute").click();
    const answer = receiver.locator(".live-responses-table .response .response-col_description pre").first();
    await answer.waitFor();
    seen = await answer.innerText();
    const notifications = JSON.parse(seen).notifications ?? [];
    const arrived = notifications.find((n) => n.body?.data?.requestId === requestId);
    if (arrived) {
      if (arrived.eventType !== "qualification.approved" || arrived.signature !== "valid") {
        throw new Error(`the receiver got ${JSON.stringify(arrived)}`);
      }
      break;
    }
    if (Date.now() > deadline) {
      throw new Error(`no notification for ${requestId} within 75 s: ${seen}`);
    }
    await page.waitForTimeout(3_000);
    await receiver.locator("button.btn-clear").click().catch(() => {});
  }
  step("the sandbox receiver shows a signed qualification.approved (signature valid)");

  await status.scrollIntoViewIfNeeded();
  await page.screenshot({ path: screenshot });
  step(`screenshot saved to ${screenshot}`);
  if (outside.length > 0) {
    throw new Error(`Swagger UI reached outside the gateway: ${outside.join(", ")}`);
  }
  step("no request left the gateway's origin");
} finally {
  await browser.close();
}
