// Types of the widget's JavaScript API (`tally-frontend.js`), for hosts written in TypeScript.
// The README's "Embedding the widget" says what each does.

/** Totals over the signed-in staff member's unmuted conversations. */
export interface Unread {
  unread: number;
  mentions: number;
}

export interface MountOptions {
  /** The relay's base URL (default: the page's origin); a path such as "/chat" is on the page's origin (the relay behind the host's own proxy). */
  relayUrl?: string;
  /** A cluster's nodes, for a page without one load balancer; takes the place of relayUrl. */
  relayUrls?: string[];
  /** A token for the signed-in staff member (HS256 JWT), or use getToken. */
  token?: string;
  /** Called on every connect: a fresh token, or a promise of one. A rejection, or anything
   * that is not a token, shows the widget signed out; it asks again later and later. */
  getToken?: () => string | Promise<string>;
  theme?: "light" | "dark" | "auto";
  /** "(3) Work app" in the tab's title (default true). */
  titleBadge?: boolean;
  /** Start with the panel open. */
  open?: boolean;
  /** Where unsent messages and drafts are kept in localStorage (default "tally.outbox"). */
  storageKey?: string;
  /** "en", "de", "fr", "es", "ja", "ar" (or a tag such as "de-AT"); default: the page's lang,
   * then the browser's languages, then English. */
  locale?: string;
  /** Texts replacing the catalog's, by key (the keys of frontend/locales/en.json). */
  strings?: Record<string, string>;
}

/** What to open: a conversation, or the direct conversation with someone (made if needed). */
export type OpenTarget = { conversation: number } | { direct: string };

/** The mounted widget. */
export interface Widget {
  /** Opens the panel, on a conversation, on the direct conversation with someone, or on the list. */
  open(target?: OpenTarget): void;
  /** Closes the panel. */
  close(): void;
  /** Called with the totals now (once known) and on every change; also a `tally:unread`
   * CustomEvent on the element mounted into, with the same `detail`. */
  onUnread(callback: (unread: Unread) => void): void;
  /** Removes the widget (its connection closes). */
  unmount(): void;
  /** Removes the widget and forgets this staff member's unsent messages and drafts here. */
  signOut(): void;
  free(): void;
}

/** Mounts the widget into `element`, in a shadow root of its own. */
export function mount(element: Element, options?: MountOptions): Widget;

/** Loads the WebAssembly module (once, before mount). */
export default function init(module_or_path?: { module_or_path: string | URL | Request }): Promise<unknown>;

declare global {
  interface HTMLElementEventMap {
    "tally:unread": CustomEvent<Unread>;
  }
}
