//! The widget's words in the host's language.
//!
//! - **Catalogs**: one JSON file per language in `frontend/locales/` (English, German, French,
//!   Spanish, Japanese, Arabic), which a translator edits: a key maps to a text, or, for a text
//!   with a number in it, to one text per CLDR plural category of that language
//!   (`{"one": "{count} unread message", "other": "{count} unread messages"}`). `{name}`
//!   placeholders are filled in by the widget. A host page can override any text through
//!   `mount(el, { strings: { key: text } })`.
//! - **Rules and formats from the browser**: which plural category a number takes
//!   (`Intl.PluralRules`), numbers, dates, times and file sizes (`Intl.NumberFormat`,
//!   `Intl.DateTimeFormat`): the browser carries CLDR's data for every language, so the bundle
//!   does not.
//! - **Which language**: `mount`'s `locale`, else the host page's `lang`, else the browser's
//!   languages, else English; the first that has a catalog. Its direction (`rtl` for Arabic)
//!   is set on the widget's root.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde::Deserialize;
use wasm_bindgen::JsValue;

/// The languages with a catalog, and their files.
pub const CATALOGS: [(&str, &str); 6] = [
    ("en", include_str!("../locales/en.json")),
    ("de", include_str!("../locales/de.json")),
    ("fr", include_str!("../locales/fr.json")),
    ("es", include_str!("../locales/es.json")),
    ("ja", include_str!("../locales/ja.json")),
    ("ar", include_str!("../locales/ar.json")),
];

/// Languages written right to left.
const RTL: [&str; 4] = ["ar", "he", "fa", "ur"];

/// One entry of a catalog.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// A text.
    Text(String),
    /// A text per plural category (`zero`, `one`, `two`, `few`, `many`, `other`).
    Plural(HashMap<String, String>),
}

// By hand rather than `#[serde(untagged)]`: an untagged derive buffers every value into serde's
// generic `Content` tree first, which would bring back some 100 KB of code the widget's bundle
// was rid of (docs/benchmarks.md).
impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a text, or a text per plural category")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Entry, E> {
                Ok(Entry::Text(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
                let mut forms = HashMap::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    forms.insert(k, v);
                }
                Ok(Entry::Plural(forms))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// A catalog: key → entry.
pub type Catalog = HashMap<String, Entry>;

/// Parses a catalog file (the files are checked by the tests: a broken one is a build bug).
pub fn parse(text: &str) -> Catalog {
    serde_json::from_str(text).unwrap_or_default()
}

/// The widget's language: its catalog (with English under it), its rules and formats.
pub struct Locale {
    /// The language tag formats use (`de-AT`, as the page asked).
    tag: String,
    /// The catalog's language (`de`).
    lang: &'static str,
    texts: Catalog,
    english: Catalog,
    plurals: js_sys::Intl::PluralRules,
    numbers: js_sys::Intl::NumberFormat,
    /// Date formats made so far, by their options: making one costs the browser about as much
    /// as drawing a message row, and every row shows a time.
    dates: std::cell::RefCell<HashMap<&'static [(&'static str, &'static str)], js_sys::Intl::DateTimeFormat>>,
}

impl std::fmt::Debug for Locale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locale").field("tag", &self.tag).finish()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Locale>>> = const { RefCell::new(None) };
}

/// The catalog language for a tag (`de-AT` → `de`), if there is one.
pub fn supported(tag: &str) -> Option<&'static str> {
    let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
    CATALOGS.iter().map(|(l, _)| *l).find(|l| *l == primary)
}

/// The first of `candidates` with a catalog (and the tag it came as), else English.
pub fn choose<'a>(candidates: impl IntoIterator<Item = &'a str>) -> (String, &'static str) {
    for c in candidates {
        let c = c.trim();
        if let Some(lang) = supported(c) {
            return (c.to_string(), lang);
        }
    }
    ("en".to_string(), "en")
}

/// What the page offers, in order: `requested` (mount's option), the page's `lang`, the
/// browser's languages.
pub fn page_candidates(requested: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = requested.map(str::to_string).into_iter().collect();
    if let Some(lang) = gloo::utils::document()
        .document_element()
        .and_then(|e| e.get_attribute("lang"))
    {
        out.push(lang);
    }
    let navigator = gloo::utils::window().navigator();
    for l in navigator.languages().iter() {
        if let Some(l) = l.as_string() {
            out.push(l);
        }
    }
    out
}

impl Locale {
    /// The locale for these candidates, with the host's `overrides` over its catalog.
    pub fn new<'a>(
        candidates: impl IntoIterator<Item = &'a str>,
        overrides: &HashMap<String, String>,
    ) -> Locale {
        let (tag, lang) = choose(candidates);
        let file = CATALOGS.iter().find(|(l, _)| *l == lang).map_or("{}", |(_, f)| f);
        let mut texts = parse(file);
        for (k, v) in overrides {
            texts.insert(k.clone(), Entry::Text(v.clone()));
        }
        let locales = js_sys::Array::of1(&JsValue::from_str(&tag));
        Locale {
            plurals: js_sys::Intl::PluralRules::new(&locales, &js_sys::Object::new()),
            numbers: js_sys::Intl::NumberFormat::new(&locales, &js_sys::Object::new()),
            dates: std::cell::RefCell::default(),
            english: parse(CATALOGS[0].1),
            texts,
            lang,
            tag,
        }
    }

    /// Makes this the widget's locale.
    pub fn install(self) -> Rc<Locale> {
        let rc = Rc::new(self);
        CURRENT.with(|c| *c.borrow_mut() = Some(rc.clone()));
        rc
    }

    /// The widget's locale (English until one is installed).
    pub fn current() -> Rc<Locale> {
        CURRENT.with(|c| {
            c.borrow_mut()
                .get_or_insert_with(|| Rc::new(Locale::new(["en"], &HashMap::new())))
                .clone()
        })
    }

    /// The tag formats use.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The catalog's language.
    pub fn lang(&self) -> &'static str {
        self.lang
    }

    /// `rtl` or `ltr`.
    pub fn dir(&self) -> &'static str {
        if RTL.contains(&self.lang) { "rtl" } else { "ltr" }
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        self.texts.get(key).or_else(|| self.english.get(key))
    }

    /// The text of `key` with `args` filled in.
    pub fn text(&self, key: &str, args: &[(&str, &str)]) -> String {
        match self.entry(key) {
            Some(Entry::Text(t)) => fill(t, args),
            Some(Entry::Plural(forms)) => forms
                .get("other")
                .map_or_else(|| key.to_string(), |t| fill(t, args)),
            None => key.to_string(),
        }
    }

    /// The text of `key` for the number `n` (its plural category's form; `{count}` is `n` as
    /// the language writes numbers), with `args` filled in.
    pub fn count(&self, key: &str, n: u64, args: &[(&str, &str)]) -> String {
        let number = self.number(n);
        let mut all: Vec<(&str, &str)> = vec![("count", &number)];
        all.extend_from_slice(args);
        match self.entry(key) {
            Some(Entry::Plural(forms)) => {
                let category: String = self.plurals.select(n as f64).into();
                let form = forms.get(&category).or_else(|| forms.get("other"));
                form.map_or_else(|| key.to_string(), |t| fill(t, &all))
            }
            Some(Entry::Text(t)) => fill(t, &all),
            None => key.to_string(),
        }
    }

    /// A number as the language writes it.
    pub fn number(&self, n: u64) -> String {
        let format = self.numbers.format();
        format
            .call1(&self.numbers, &JsValue::from_f64(n as f64))
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_else(|| n.to_string())
    }

    /// A byte size as the language writes it (`48 kB`, `1,2 MB`).
    pub fn bytes(&self, n: u64) -> String {
        let (value, unit) = if n >= 1_048_576 {
            ((n as f64 / 1_048_576.0 * 10.0).round() / 10.0, "megabyte")
        } else {
            ((n as f64 / 1024.0).ceil(), "kilobyte")
        };
        let options = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&options, &"style".into(), &"unit".into());
        let _ = js_sys::Reflect::set(&options, &"unit".into(), &unit.into());
        let _ = js_sys::Reflect::set(&options, &"maximumFractionDigits".into(), &1.into());
        let locales = js_sys::Array::of1(&JsValue::from_str(&self.tag));
        let format = js_sys::Intl::NumberFormat::new(&locales, &options);
        format
            .format()
            .call1(&format, &JsValue::from_f64(value))
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_else(|| format!("{value} {unit}"))
    }

    /// A date or time with `Intl.DateTimeFormat` options given as `(name, value)` pairs (the
    /// format is made once per set of options, then kept).
    pub fn date(&self, at: &js_sys::Date, options: &'static [(&'static str, &'static str)]) -> String {
        let format = self
            .dates
            .borrow_mut()
            .entry(options)
            .or_insert_with(|| {
                let o = js_sys::Object::new();
                for (k, v) in options {
                    let _ = js_sys::Reflect::set(&o, &(*k).into(), &(*v).into());
                }
                let locales = js_sys::Array::of1(&JsValue::from_str(&self.tag));
                js_sys::Intl::DateTimeFormat::new(&locales, &o)
            })
            .clone();
        format
            .format()
            .call1(&format, at)
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    }

    /// A moment as a weekday and a time ("Sat 14:30"), for "until …".
    pub fn date_time(&self, at: tally_shared::Millis) -> String {
        let date = js_sys::Date::new(&JsValue::from_f64(at.0 as f64));
        self.date(
            &date,
            &[("weekday", "short"), ("hour", "numeric"), ("minute", "2-digit")],
        )
    }

    /// A weekday's short name (0 Monday … 6 Sunday).
    pub fn weekday_short(&self, day: u8) -> String {
        // 1 January 2024 was a Monday.
        let at = 1_704_067_200_000.0 + f64::from(day) * 86_400_000.0;
        let date = js_sys::Date::new(&JsValue::from_f64(at));
        self.date(&date, &[("weekday", "short"), ("timeZone", "UTC")])
    }

    /// Every key of every catalog, and the plural categories each language needs that a
    /// plural entry lacks: what the catalog test checks (empty when complete).
    pub fn gaps() -> Vec<String> {
        let english = parse(CATALOGS[0].1);
        let mut gaps = Vec::new();
        for (lang, file) in CATALOGS {
            let catalog = parse(file);
            if catalog.is_empty() {
                gaps.push(format!("{lang}: the catalog does not parse"));
                continue;
            }
            let rules =
                js_sys::Intl::PluralRules::new(&js_sys::Array::of1(&lang.into()), &js_sys::Object::new());
            let categories: Vec<String> =
                js_sys::Reflect::get(&rules.resolved_options(), &"pluralCategories".into())
                    .map(|v| {
                        js_sys::Array::from(&v)
                            .iter()
                            .filter_map(|c| c.as_string())
                            .collect()
                    })
                    .unwrap_or_default();
            for (key, entry) in &english {
                match (entry, catalog.get(key)) {
                    (_, None) => gaps.push(format!("{lang}: no {key}")),
                    (Entry::Text(_), Some(Entry::Plural(_))) | (Entry::Plural(_), Some(Entry::Text(_))) => {
                        gaps.push(format!("{lang}: {key} is not of English's kind"));
                    }
                    (Entry::Plural(_), Some(Entry::Plural(forms))) => {
                        for c in &categories {
                            if !forms.contains_key(c) {
                                gaps.push(format!("{lang}: {key} has no `{c}` form"));
                            }
                        }
                    }
                    (Entry::Text(_), Some(Entry::Text(_))) => {}
                }
            }
            for key in catalog.keys().filter(|k| !english.contains_key(*k)) {
                gaps.push(format!("{lang}: {key} is not in English"));
            }
            for (key, entry) in &catalog {
                let texts: Vec<&String> = match entry {
                    Entry::Text(t) => vec![t],
                    Entry::Plural(f) => f.values().collect(),
                };
                let want = placeholders(english.get(key));
                for t in texts {
                    for p in placeholders_of(t) {
                        if !want.contains(&p) {
                            gaps.push(format!(
                                "{lang}: {key} has a placeholder {{{p}}} English does not"
                            ));
                        }
                    }
                }
            }
        }
        gaps
    }
}

fn placeholders(entry: Option<&Entry>) -> Vec<String> {
    let mut out = vec!["count".to_string()];
    match entry {
        Some(Entry::Text(t)) => out.extend(placeholders_of(t)),
        Some(Entry::Plural(f)) => f.values().for_each(|t| out.extend(placeholders_of(t))),
        None => {}
    }
    out
}

fn placeholders_of(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        out.push(after[..close].to_string());
        rest = &after[close + 1..];
    }
    out
}

/// `text` with each `{name}` replaced by its value.
pub fn fill(text: &str, args: &[(&str, &str)]) -> String {
    if !text.contains('{') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match args.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The text of `key` in the widget's language.
pub fn t(key: &str) -> String {
    Locale::current().text(key, &[])
}

/// The text of `key` with `args`.
pub fn ta(key: &str, args: &[(&str, &str)]) -> String {
    Locale::current().text(key, args)
}

/// The text of `key` for `n` things.
pub fn tn(key: &str, n: u64) -> String {
    Locale::current().count(key, n, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_unknown_ones_kept() {
        assert_eq!(fill("{a} and {b}", &[("a", "x"), ("b", "y")]), "x and y");
        assert_eq!(fill("{a} {zz}", &[("a", "x")]), "x {zz}");
        assert_eq!(fill("no braces", &[]), "no braces");
        assert_eq!(fill("{unclosed", &[]), "{unclosed");
    }

    #[test]
    fn the_first_language_with_a_catalog_is_chosen() {
        assert_eq!(choose(["de-AT", "en"]), ("de-AT".to_string(), "de"));
        assert_eq!(choose(["xx", "ar_EG"]), ("ar_EG".to_string(), "ar"));
        assert_eq!(choose(["xx", "yy"]), ("en".to_string(), "en"));
    }
}
