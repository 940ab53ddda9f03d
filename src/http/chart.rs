//! The effect report drawn as SVG (`GET .../effect.svg`), with plotters'
//! SVG backend: one panel per measure, before and after side by side with
//! their values, the change under them, and the coverage said in the
//! heading, in black and greys so that it prints.

use chrono::{DateTime, Utc};
use plotters::prelude::*;

use super::history::EffectResponse;
use crate::domain::history::MEASURES;

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 1560;
const HEADER: u32 = 200;
const BEFORE: RGBColor = RGBColor(170, 170, 170);
const AFTER: RGBColor = RGBColor(40, 40, 40);

fn shown(v: Option<f64>) -> String {
    v.map_or_else(|| "no data".to_owned(), |x| format!("{x:.2}"))
}

fn days(n: f64) -> String {
    if n == 1.0 {
        "1 day".to_owned()
    } else {
        format!("{n} days")
    }
}

fn signed(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |x| format!("{x:+.2}"))
}

/// Draws `report`; `local` writes an instant in the deployment's zone.
pub fn effect_svg(
    report: &EffectResponse,
    zone: &str,
    local: impl Fn(DateTime<Utc>) -> String,
) -> Result<String, String> {
    let mut svg = String::new();
    draw(report, zone, &local, &mut svg).map_err(|e| format!("cannot draw the chart: {e}"))?;
    Ok(svg)
}

fn draw(
    r: &EffectResponse,
    zone: &str,
    local: &impl Fn(DateTime<Utc>) -> String,
    out: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(HEADER);
    let big = ("sans-serif", 30).into_font().color(&BLACK);
    let text = ("sans-serif", 20).into_font().color(&BLACK);
    head.draw(&Text::new(
        format!("Effect of the change on {}", r.road_id),
        (30, 20),
        big,
    ))?;
    head.draw(&Text::new(
        format!(
            "Pivot {} ({zone}): {} before against {} after",
            local(r.pivot),
            days(r.before.days),
            days(r.after.days)
        ),
        (30, 64),
        text.clone(),
    ))?;
    head.draw(&Text::new(
        format!(
            "Before {} to {}; after {} to {}",
            local(r.before.from),
            local(r.before.to),
            local(r.after.from),
            local(r.after.to)
        ),
        (30, 94),
        text.clone(),
    ))?;
    head.draw(&Text::new(
        format!(
            "Sensor coverage: {}% before, {}% after (share of bay-time the sensors vouched for)",
            shown(r.before.coverage_percent),
            shown(r.after.coverage_percent)
        ),
        (30, 124),
        text.clone(),
    ))?;
    let mut y = 154;
    for w in &r.warnings {
        head.draw(&Text::new(
            format!("Warning: {}", w.message),
            (30, y),
            ("sans-serif", 16).into_font().color(&BLACK),
        ))?;
        y += 22;
        if y > HEADER as i32 - 10 {
            break;
        }
    }
    let [before, after] = r.sides();
    let change = [
        r.change.occupancy_percent,
        r.change.turnover_per_bay_day,
        r.change.average_dwell_minutes,
        r.change.overstays_per_day,
        r.change.outside_bay_per_day,
        r.change.obstructions_per_day,
        r.change.footway_parking_per_day,
        r.change.coverage_percent,
    ];
    for (i, panel) in body.split_evenly((4, 2)).iter().enumerate() {
        let (_, title) = MEASURES[i];
        let (w, h) = panel.dim_in_pixel();
        let (w, h) = (w as i32, h as i32);
        panel.draw(&Rectangle::new(
            [(10, 5), (w - 10, h - 5)],
            BLACK.stroke_width(1),
        ))?;
        panel.draw(&Text::new(
            title,
            (24, 18),
            ("sans-serif", 22).into_font().color(&BLACK),
        ))?;
        let (b, a) = (before[i], after[i]);
        let top = b
            .unwrap_or(0.0)
            .max(a.unwrap_or(0.0))
            .max(f64::MIN_POSITIVE);
        let (base, room) = (h - 60, h - 130);
        for (j, (label, v, colour)) in [("before", b, BEFORE), ("after", a, AFTER)]
            .into_iter()
            .enumerate()
        {
            let x0 = 60 + j as i32 * 180;
            let bar = v.map_or(0, |v| ((v / top) * f64::from(room)).round() as i32);
            panel.draw(&Rectangle::new(
                [(x0, base - bar), (x0 + 120, base)],
                colour.filled(),
            ))?;
            panel.draw(&Rectangle::new(
                [(x0, base - bar), (x0 + 120, base)],
                BLACK.stroke_width(1),
            ))?;
            panel.draw(&Text::new(
                shown(v),
                (x0 + 10, base - bar - 28),
                text.clone(),
            ))?;
            panel.draw(&Text::new(label, (x0 + 30, base + 10), text.clone()))?;
        }
        panel.draw(&Text::new(
            "bars to the larger value's scale",
            (24, h - 26),
            ("sans-serif", 14).into_font().color(&BLACK),
        ))?;
        panel.draw(&Text::new(
            format!("change: {}", signed(change[i])),
            (420, h / 2),
            ("sans-serif", 22).into_font().color(&BLACK),
        ))?;
    }
    root.present()?;
    Ok(())
}
