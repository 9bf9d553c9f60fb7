// Loads the accounts page in headless Chromium, types an account name, clicks "Connect TikTok", follows
// the real redirects (daemon → simulator's authorize page → daemon's callback) and checks the success
// page and the account listed afterwards. Usage: node connect.mjs BASE_URL SCREENSHOT_DIR
import { chromium } from 'playwright-core';

const [base, shots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  await page.goto(base + '/');
  const heading = await page.textContent('h1');
  if (heading.trim() !== 'TikTok accounts') throw new Error(`unexpected heading: ${heading}`);
  await page.screenshot({ path: `${shots}/accounts-empty.png`, fullPage: true });
  await page.fill('input[name=account]', 'browser');
  await Promise.all([page.waitForURL(/\/oauth\/callback/), page.click('text=Connect TikTok')]);
  const body = await page.textContent('body');
  if (!body.includes('is connected')) throw new Error(`callback page says: ${body}`);
  await page.screenshot({ path: `${shots}/connected.png`, fullPage: true });
  await page.goto(base + '/');
  const table = await page.textContent('table');
  if (!table.includes('browser') || !table.includes('ok')) throw new Error(`account not listed: ${table}`);
  await page.screenshot({ path: `${shots}/accounts-listed.png`, fullPage: true });
  console.log('browser check passed');
} finally {
  await browser.close();
}
