// Light and dark: the system's preference unless the visitor chose one with the toggle (kept
// in localStorage). The chosen theme is <html data-theme="light|dark">; pages whose canvases
// need colours listen to the document's `themechange` event and read them with colors().

const THEME_KEY = 'topcoins.theme';
const media = window.matchMedia('(prefers-color-scheme: dark)');

function readStored() {
  try {
    const t = localStorage.getItem(THEME_KEY);
    return t === 'light' || t === 'dark' ? t : null;
  } catch {
    return null;
  }
}

let choice = readStored();

export function currentTheme() {
  return choice || (media.matches ? 'dark' : 'light');
}

function apply(button) {
  const theme = currentTheme();
  document.documentElement.dataset.theme = theme;
  if (button) {
    const other = theme === 'dark' ? 'light' : 'dark';
    button.setAttribute('aria-label', `Switch to ${other} theme`);
    button.title = `Switch to ${other} theme`;
    button.textContent = theme === 'dark' ? '☀' : '☾';
  }
  document.dispatchEvent(new Event('themechange'));
}

/** Applies the theme now and wires the toggle button. */
export function initTheme(button) {
  apply(button);
  media.addEventListener('change', () => {
    if (!choice) apply(button);
  });
  if (button) {
    button.addEventListener('click', () => {
      choice = currentTheme() === 'dark' ? 'light' : 'dark';
      try {
        localStorage.setItem(THEME_KEY, choice);
      } catch {
        // Not kept: it still applies to this page.
      }
      apply(button);
    });
  }
}

/** The theme's colours, read from the CSS custom properties. */
export function colors() {
  const s = getComputedStyle(document.documentElement);
  const v = (name) => s.getPropertyValue(name).trim();
  return {
    bg: v('--bg'),
    fg: v('--fg'),
    muted: v('--muted'),
    grid: v('--grid'),
    border: v('--border'),
    up: v('--up'),
    down: v('--down'),
    accent: v('--accent'),
  };
}
