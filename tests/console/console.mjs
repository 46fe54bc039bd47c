// Drives the approval console in Debian's headless Chromium with Playwright (playwright-core:
// no browser download; /usr/bin/chromium is installed by .ci/install-tools).
//
//   node console.mjs CONFIG.json
//
// CONFIG: { url, phase: "one" | "two", userDataDir, shots, out, keys: { bob, alice },
//           carol }   (key files are PKCS#8 PEM; carol is a principal without a usable key yet)
//
// Phase one: a key generated in the browser is not enrolled (refused, in words); bob imports his
// key file, signs in, sees the list and the detail, and approves (1 of 2); alice, requester of
// a-1, is refused when she approves her own request. Writes { carolKey } to `out`.
// Phase two (after the test enrolled carol's browser key and reloaded the signed policy): carol
// signs in with the key kept in the browser and approves: the quorum is met and it is signed.
// Every page load must fetch nothing but the console's own address. Screenshots go to `shots`.
import { chromium } from "playwright-core";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
mkdirSync(config.shots, { recursive: true });

const TIMEOUT = 30_000;
const foreign = [];

function check(condition, what) {
  if (!condition) throw new Error(what);
}

async function shot(page, name) {
  await page.screenshot({ path: join(config.shots, name), fullPage: true });
}

async function message(page, expected) {
  const box = page.locator("#message");
  await box.filter({ hasText: expected }).waitFor({ state: "visible", timeout: TIMEOUT });
  return box.textContent();
}

async function signInWithFile(page, file) {
  await page.setInputFiles("#keyfile", file);
  await page.locator("#key-status").filter({ hasText: "Key loaded" }).waitFor({ timeout: TIMEOUT });
  await page.click("#signin-button");
  await page.locator("#list-section").waitFor({ state: "visible", timeout: TIMEOUT });
}

async function signOut(page) {
  await page.click("#logout");
  await page.locator("#signin").waitFor({ state: "visible", timeout: TIMEOUT });
}

async function openRequest(page, id) {
  const row = page.locator(`#pending tbody tr[data-request-id="${id}"]`);
  await row.waitFor({ timeout: TIMEOUT });
  await row.locator("button.open").click();
  await page.locator("#detail").waitFor({ state: "visible", timeout: TIMEOUT });
  await page.locator("#d-id").filter({ hasText: id }).waitFor({ timeout: TIMEOUT });
}

async function phaseOne(page) {
  await shot(page, "01-signed-out.png");

  // A key generated here: shown for enrolment, not yet usable.
  await page.click("#generate-box summary");
  await page.fill("#gen-principal", config.carol);
  await page.click("#generate");
  const enrol = page.locator("#enrol");
  await enrol.waitFor({ state: "visible", timeout: TIMEOUT });
  const enrolText = await enrol.textContent();
  const match = enrolText.match(/"(p256:0[23][0-9a-f]{64})"/);
  check(match, `no P-256 key in the enrolment text: ${enrolText}`);
  check(enrolText.includes(JSON.stringify(config.carol)), "the enrolment names the principal");
  const carolKey = match[1];
  await shot(page, "02-key-generated.png");
  await page.click("#signin-button");
  const refused = await message(page, "not enrolled");
  check(refused.includes("Refused (key-not-enrolled)"), `refusal in words: ${refused}`);
  await shot(page, "03-key-not-enrolled.png");

  // Bob: key file, list, detail, approve.
  await signInWithFile(page, config.keys.bob);
  await page.locator("#who").filter({ hasText: "officers/bob" }).waitFor({ timeout: TIMEOUT });
  const rows = page.locator("#pending tbody tr");
  await rows.first().waitFor({ timeout: TIMEOUT });
  check((await rows.count()) === 2, `two pending requests, got ${await rows.count()}`);
  const t1 = await page.locator('#pending tbody tr[data-request-id="t-1"]').textContent();
  check(t1.includes("100 ETH"), `the list shows the amount in units: ${t1}`);
  check(t1.includes("treasury moves"), `the list shows the rule: ${t1}`);
  check(t1.includes("0 of 2"), `the list shows the quorum: ${t1}`);
  check(t1.includes("0.000042 ETH"), `the list shows the fee: ${t1}`);
  await shot(page, "04-list.png");

  await openRequest(page, "t-1");
  const facts = await page.locator("#d-facts").textContent();
  check(facts.includes("100 ETH") && facts.includes("treasury moves"), `detail facts: ${facts}`);
  const dest = await page.locator("#d-dest").textContent();
  check(dest.includes("0x3535353535353535353535353535353535353535") && dest.includes("100 ETH"),
    `destinations: ${dest}`);
  const lines = await page.locator("#d-lines").textContent();
  check(lines.includes("amount: 100 ETH"), `what is signed: ${lines}`);
  await shot(page, "05-detail.png");
  await page.fill("#reason", "matches ticket T-1");
  await page.click("#approve");
  const one = await message(page, "1 of 2");
  check(one.includes("Your signed approval is recorded"), one);
  await page.locator("#d-votes").filter({ hasText: "counted" }).waitFor({ timeout: TIMEOUT });
  await shot(page, "06-approved-one-of-two.png");
  await signOut(page);

  // Alice asked for a-1: her own approval is refused, in words.
  await signInWithFile(page, config.keys.alice);
  await openRequest(page, "a-1");
  await page.fill("#reason", "my own");
  await page.click("#approve");
  const self = await message(page, "cannot approve");
  check(self.includes("Refused (self-approval)"), self);
  await shot(page, "07-requester-refused.png");
  await signOut(page);
  return { carolKey };
}

async function phaseTwo(page) {
  // The key generated in phase one, kept (non-extractable) in this browser profile.
  await page.locator("#use-stored").waitFor({ state: "visible", timeout: TIMEOUT });
  await page.click("#use-stored");
  await page.locator("#key-status").filter({ hasText: "kept in this browser" }).waitFor({ timeout: TIMEOUT });
  await page.click("#signin-button");
  await page.locator("#who").filter({ hasText: config.carol }).waitFor({ timeout: TIMEOUT });
  await openRequest(page, "t-1");
  await page.fill("#reason", "second officer, ticket T-1");
  await page.click("#approve");
  const done = await message(page, "quorum is met");
  check(done.includes("signed"), done);
  await page.locator("#d-facts").filter({ hasText: "Transaction" }).waitFor({ timeout: TIMEOUT });
  await shot(page, "08-quorum-met-signed.png");
  return {};
}

const context = await chromium.launchPersistentContext(config.userDataDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
  ],
  viewport: { width: 1280, height: 900 },
});
let code = 0;
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(TIMEOUT);
page.on("request", (r) => {
  if (!r.url().startsWith(config.url)) foreign.push(r.url());
});
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
try {
  await page.goto(config.url);
  const result = config.phase === "one" ? await phaseOne(page) : await phaseTwo(page);
  check(foreign.length === 0, `the page loaded something from elsewhere: ${foreign.join(", ")}`);
  check(errors.length === 0, `script errors: ${errors.join("; ")}`);
  writeFileSync(config.out, JSON.stringify(result));
  console.log(`phase ${config.phase}: ok`);
} catch (e) {
  code = 1;
  console.error(`phase ${config.phase} failed: ${e.stack || e}`);
  try {
    await shot(page, `failure-phase-${config.phase}.png`);
  } catch (_) {
    // The page may be gone.
  }
} finally {
  await context.close();
}
process.exit(code);
