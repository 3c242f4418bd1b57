// `partner-gateway login` as an operator meets it, in headless Chromium against a running
// sandbox: --browser opens the sandbox Entra's sign-in page, "Sign in" is clicked, Entra's
// redirect lands on login's localhost listener; --device-code prints a code that is typed
// into the device page. Each login must then report the user with MFA and store the token.
// Usage: node login.mjs <gateway-binary> <sandbox-url> <work-dir>
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [binary, sandbox, workDir] = process.argv.slice(2);
if (!binary || !sandbox || !workDir) {
  throw new Error("usage: node login.mjs <gateway-binary> <sandbox-url> <work-dir>");
}
const step = (message) => console.log(`login: ${message}`);

/** Starts login; resolves its first stderr line matching `wanted`, and its outcome later. */
function startLogin(flow, tokenFile, wanted) {
  const child = spawn(
    binary,
    ["login", flow, "--sandbox", sandbox, "--no-open", "--timeout-secs", "60"],
    {
      env: {
        PATH: process.env.PATH,
        PARTNER_GATEWAY__PARTNER_TOKEN__REFRESH_TOKEN_FILE: tokenFile,
        PARTNER_GATEWAY__PARTNER_TOKEN__LOGIN_REDIRECT_PORTS: "0",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  const instruction = new Promise((resolve, reject) => {
    createInterface({ input: child.stderr }).on("line", (line) => {
      stderr += `${line}\n`;
      const found = wanted(line);
      if (found) resolve(found);
    });
    child.on("exit", () => reject(new Error(`login ended before its instruction: ${stderr}`)));
  });
  const outcome = new Promise((resolve) =>
    child.on("exit", (code) => resolve({ code, stdout, stderr: () => stderr })),
  );
  const timer = setTimeout(() => child.kill(), 90_000);
  outcome.finally(() => clearTimeout(timer));
  return { instruction, outcome };
}

async function expectStored(flow, outcome, tokenFile, user) {
  const { code, stdout, stderr } = await outcome;
  if (code !== 0 || !stdout.includes(`Signed in as ${user}`) || !stdout.includes("MFA: yes")) {
    throw new Error(`login ${flow} exited ${code}: ${stdout} ${stderr()}`);
  }
  const stored = JSON.parse(readFileSync(tokenFile, "utf8"));
  if (stored.user !== user || stored.signed_in_with !== flow.slice(2) || stored.mfa !== true) {
    throw new Error(`login ${flow} stored ${JSON.stringify({ ...stored, refresh_token: "…" })}`);
  }
  step(`${flow}: "${stdout.split("\n")[0]}", token stored`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
try {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(20_000);

  const browserFile = join(workDir, "browser-refresh-token");
  const viaBrowser = startLogin("--browser", browserFile, (line) =>
    line.includes("/oauth2/v2.0/authorize?") ? line.trim() : null,
  );
  await page.goto(await viaBrowser.instruction);
  await page.getByLabel("User").fill("dana@contoso.example");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("Signed in.").waitFor();
  if (!new URL(page.url()).hostname.match(/^(localhost|127\.0\.0\.1|\[::1\])$/)) {
    throw new Error(`the sign-in did not come back to login's listener: ${page.url()}`);
  }
  step("--browser: signed in on the sandbox Entra's page, redirected to login's localhost listener");
  await expectStored("--browser", viaBrowser.outcome, browserFile, "dana@contoso.example");

  const deviceFile = join(workDir, "device-refresh-token");
  const viaDevice = startLogin("--device-code", deviceFile, (line) => {
    const match = line.match(/open the page (\S+) and enter the code (\S+)/);
    return match ? { page: match[1], code: match[2] } : null;
  });
  const { page: devicePage, code } = await viaDevice.instruction;
  await page.goto(devicePage);
  await page.getByLabel("Code").fill(code);
  await page.getByLabel("User").fill("erin@contoso.example");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("You have signed in").waitFor();
  step(`--device-code: entered ${code} on the device page`);
  await expectStored("--device-code", viaDevice.outcome, deviceFile, "erin@contoso.example");
} finally {
  await browser.close();
}
