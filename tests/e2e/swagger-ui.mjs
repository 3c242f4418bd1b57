// Swagger UI as a user meets it, in headless Chromium with no outside network: the three
// operations are there, Authorize takes a sandbox caller token, and "Try it out" on the POST
// answers 202 with vettingStatus InReview.
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
