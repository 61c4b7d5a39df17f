//! Quiet hours and snooze in the browser: the local time in the schedule's zone (asked of
//! `Intl`, which knows every zone the relay does), whether this moment is quiet (the rule is
//! `tally_shared::quiet`), and the moments the snooze buttons mean.

use tally_shared::Millis;
use tally_shared::quiet::{LocalTime, Quiet};
use wasm_bindgen::{JsCast, JsValue};

fn get(target: &JsValue, key: &str) -> Option<JsValue> {
    js_sys::Reflect::get(target, &JsValue::from_str(key)).ok()
}

/// The local time in `zone` at `at`; `None` for a zone the browser does not know.
pub fn local_time(zone: &str, at: Millis) -> Option<LocalTime> {
    let intl = get(&js_sys::global(), "Intl")?;
    let ctor: js_sys::Function = get(&intl, "DateTimeFormat")?.dyn_into().ok()?;
    let options = js_sys::Object::new();
    for (k, v) in [
        ("timeZone", zone),
        ("weekday", "short"),
        ("hour", "2-digit"),
        ("minute", "2-digit"),
        ("hourCycle", "h23"),
    ] {
        js_sys::Reflect::set(&options, &k.into(), &v.into()).ok()?;
    }
    let args = js_sys::Array::of2(&"en-US".into(), &options);
    // An unknown zone throws a RangeError: caught here, not in the module.
    let format = js_sys::Reflect::construct(&ctor, &args).ok()?;
    let parts: js_sys::Function = get(&format, "formatToParts")?.dyn_into().ok()?;
    let date = js_sys::Date::new(&JsValue::from_f64(at.0 as f64));
    let parts: js_sys::Array = parts.call1(&format, &date).ok()?.dyn_into().ok()?;
    let (mut weekday, mut hour, mut minute) = (None, None, None);
    for part in parts.iter() {
        let kind = get(&part, "type")?.as_string()?;
        let value = get(&part, "value")?.as_string()?;
        match kind.as_str() {
            "weekday" => {
                weekday = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
                    .iter()
                    .position(|d| *d == value)
            }
            "hour" => hour = value.parse::<u16>().ok(),
            "minute" => minute = value.parse::<u16>().ok(),
            _ => {}
        }
    }
    Some(LocalTime {
        weekday: weekday? as u8,
        minute: (hour? % 24) * 60 + minute?,
    })
}

/// Now, by the browser's clock.
pub fn now() -> Millis {
    Millis(js_sys::Date::now() as u64)
}

/// Whether `quiet` holds now.
pub fn is_quiet_now(quiet: &Quiet) -> bool {
    let at = now();
    let local = quiet.schedule.as_ref().and_then(|s| local_time(&s.zone, at));
    quiet.is_quiet(at, local)
}

/// The browser's time zone (`Europe/Berlin`), for a new schedule.
pub fn browser_zone() -> String {
    let format = js_sys::Intl::DateTimeFormat::new(&js_sys::Array::new(), &js_sys::Object::new());
    get(&format.resolved_options(), "timeZone")
        .and_then(|z| z.as_string())
        .unwrap_or_else(|| "UTC".into())
}

/// Tomorrow at 8:00, local time: what "until tomorrow" means.
pub fn tomorrow_morning() -> Millis {
    let d = js_sys::Date::new_0();
    d.set_date(d.get_date() + 1);
    d.set_hours(8);
    d.set_minutes(0);
    d.set_seconds(0);
    d.set_milliseconds(0);
    Millis(d.get_time() as u64)
}
