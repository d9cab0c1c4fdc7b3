// DOM helpers shared by every screen: building elements, labelled fields
// (with core's check for hidden characters as they are typed), the status
// line, running an action from a button, screens and dialogs.
import { checkText, checkPassphrase } from '../troth_wasm.js';

const main = document.getElementById('main');
const dialog = document.getElementById('dialog');
const statusEl = document.getElementById('status');

/** Builds an element: h('button', {onclick}, 'Text'). */
export function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

let uid = 0;
/** A fresh id for an element (`f1`, `f2`, …). */
export const nextId = () => ++uid;
/** A labelled field: returns [wrapper, input]. */
export function field(label, tag, attrs = {}, hint) {
  const id = attrs.id || `f${++uid}`;
  const hintId = hint ? `${id}-hint` : undefined;
  const input = h(tag, { id, 'aria-describedby': hintId, ...attrs });
  const wrap = h('div', {}, h('label', { for: id }, label), hint ? h('p', { id: hintId, class: 'muted' }, hint) : null, input);
  if (tag === 'textarea' || attrs.type === 'text') {
    // Core's check for invisible and direction-changing characters, shown
    // next to the field as it is typed (the composer refuses them too).
    const e = h('p', { class: 'error', id: `${id}-err`, role: 'alert' });
    input.setAttribute('aria-errormessage', e.id);
    input.addEventListener('input', () => {
      let msg = '';
      try { checkText(input.value); } catch (x) { msg = x.message; }
      e.textContent = msg;
      if (msg) input.setAttribute('aria-invalid', 'true'); else input.removeAttribute('aria-invalid');
    });
    wrap.append(e);
  }
  return [wrap, input];
}

/** A strength hint under a new passphrase's field (core's check_passphrase). */
export function passHint(input, wrap) {
  const p = h('p', { class: 'muted', id: `${input.id}-str`, 'aria-live': 'polite' });
  input.setAttribute('aria-describedby', `${input.getAttribute('aria-describedby') || ''} ${p.id}`.trim());
  input.addEventListener('input', () => {
    try { checkPassphrase(input.value); p.textContent = input.value ? 'That works.' : ''; } catch (x) { p.textContent = x.message; }
  });
  wrap.append(p);
}

/** A labelled checkbox: returns [label, input]. */
export function checkbox(label, attrs = {}) {
  const id = `f${++uid}`;
  const input = h('input', { type: 'checkbox', id, ...attrs });
  return [h('label', { class: 'inline', for: id }, input, label), input];
}

/** Shows a short message in the status line (read out politely), for six seconds. */
export function say(msg) {
  statusEl.textContent = msg;
  clearTimeout(say.t);
  say.t = setTimeout(() => { statusEl.textContent = ''; }, 6000);
}

/** Waits `ms` milliseconds (lets the page paint before long work in wasm). */
export const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs an action from a button: disables it, shows errors kindly next to it. */
export async function act(btn, errEl, fn) {
  if (btn) btn.disabled = true;
  if (errEl) errEl.textContent = '';
  try {
    await fn();
  } catch (e) {
    const raw = e && e.message ? e.message : String(e);
    const msg = raw.charAt(0).toUpperCase() + raw.slice(1);
    if (errEl) errEl.textContent = msg; else say(msg);
    // A field that holds what was refused (e.g. a hidden character) gets the focus.
    const bad = errEl && errEl.closest('form, dialog')?.querySelector('[aria-invalid]');
    if (bad) bad.focus();
  } finally {
    if (btn && btn.isConnected) btn.disabled = false;
    // A "please wait" note is over once the action is.
    if (/…/.test(statusEl.textContent)) statusEl.textContent = '';
  }
}

/** An empty error line, filled by `act` when an action fails. */
export function errorLine() {
  return h('p', { class: 'error', role: 'alert' });
}

/** Replaces the main area with a titled screen and moves the focus to it. */
export function screen(title, ...kids) {
  main.replaceChildren(h('h1', { id: 'screen-title' }, title), ...kids.filter((k) => k !== null && k !== undefined && k !== false));
  document.title = `${title} · Troth`;
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

/** A date and time in the reader's locale. */
export function when(ms) {
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** Hands `text` to the browser as a file download named `name`. */
export function download(name, text, type = 'application/octet-stream') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 5000);
}

/** Shows the modal dialog with a title and content; focuses its first control.
 *  A modal dialog makes the page behind it inert, the header's Quick exit
 *  too, so every dialog carries its own (last in the tab order, drawn at
 *  the top corner). */
export function openDialog(title, ...kids) {
  const exit = h('button', { type: 'button', class: 'exit dialog-exit', title: 'Leave this page at once (also: press Escape twice)' }, 'Quick exit');
  exit.addEventListener('click', () => document.getElementById('quick-exit').click());
  dialog.replaceChildren(h('h2', { id: 'dialog-title' }, title), ...kids.filter((k) => k !== null && k !== undefined), exit);
  if (!dialog.open) dialog.showModal();
  const first = dialog.querySelector('input, textarea, select, button');
  if (first) first.focus();
}

/** Closes the modal dialog if it is open. */
export function closeDialog() {
  if (dialog.open) dialog.close();
}
