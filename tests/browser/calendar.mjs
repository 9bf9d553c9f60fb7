// Loads a calendar page in headless Chromium at 1400x900, with JavaScript off (the page must not need
// it), reads what it shows (each day's heading, position and entries) and saves a full-page
// screenshot. Prints one JSON line: {days, scrollWidth, viewport}. Usage: node calendar.mjs URL PNG
import { chromium } from 'playwright-core';

const [url, png] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, javaScriptEnabled: false });
  const page = await context.newPage();
  const response = await page.goto(url);
  if (response.status() !== 200) throw new Error(`status ${response.status()} for ${url}`);
  const heading = (await page.textContent('h1')).trim();
  const header = (await page.textContent('.cal-head')).replace(/\s+/g, ' ').trim();
  const links = await page.$$eval('nav a', (as) => as.map((a) => ({ rel: a.rel, href: a.getAttribute('href') })));
  const days = await page.$$eval('section.day', (sections) => sections.map((s) => {
    const box = s.getBoundingClientRect();
    return {
      heading: s.querySelector('h2').textContent.trim(),
      left: box.left,
      top: box.top,
      width: box.width,
      entries: [...s.querySelectorAll('li')].map((li) => {
        const badge = li.querySelector('.badge');
        const a = li.querySelector('a');
        const time = li.querySelector('time');
        // The title is the text after the badge: the entry's text without time, badge and the
        // "(slot)" note.
        let title = null;
        if (badge) {
          const parts = [];
          for (let n = badge.nextSibling; n; n = n.nextSibling) {
            if (n.nodeType === 1 && n.tagName === 'SMALL') break;
            parts.push(n.textContent);
          }
          title = parts.join('').trim();
        }
        return {
          time: time ? time.textContent : null,
          datetime: time ? time.getAttribute('datetime') : null,
          slot: li.classList.contains('slot'),
          free: !!li.querySelector('.free'),
          state: badge ? badge.textContent : null,
          title,
          href: a ? a.getAttribute('href') : null,
          struck: badge ? getComputedStyle(badge).textDecorationLine : null,
        };
      }),
    };
  }));
  const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  await page.screenshot({ path: png, fullPage: true });
  console.log(JSON.stringify({ heading, header, links, days, scrollWidth, viewport: 1400 }));
} finally {
  await browser.close();
}
