// What both browser tests share: Chromium launched through playwright-core (PLAYWRIGHT_CORE, CHROMIUM), a page of
// the size screenshots are taken at (saved in SCREENSHOTS), and what went wrong on it: errors the page raised and
// answers that failed.
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

export const launch = () => chromium.launch({ executablePath: process.env.CHROMIUM, args: ['--no-sandbox'] });

export const shot = (page, name) =>
  page.screenshot({ path: path.join(process.env.SCREENSHOTS, `${name}.png`), fullPage: true });

/// A new page in a context of its own, with the errors it raises (`pageErrors`) and the answers of 400 and above it
/// gets (`failed`, as "status METHOD path").
export async function watchedPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const pageErrors = [];
  const failed = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  // Failed answers are in `failed`; the console's own note of each is left out.
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) pageErrors.push(message.text());
  });
  page.on('response', (response) => {
    if (response.status() >= 400) failed.push(`${response.status()} ${response.request().method()} ${new URL(response.url()).pathname}`);
  });
  return { context, page, pageErrors, failed };
}
