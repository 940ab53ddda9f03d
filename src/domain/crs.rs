//! The coordinate reference system of a planner's layout.
//!
//! kerbside keeps every position as WGS 84 longitude and latitude in
//! degrees (RFC 7946). GIS tools may say what they wrote in a GeoJSON 2008
//! `crs` member (GDAL writes one for anything but WGS 84), and in China a
//! layout comes in one of two more datums:
//!
//! * **CGCS2000** (EPSG:4490), the datum of official mapping. It agrees with
//!   WGS 84 to within a few centimetres, below what a bay's paint can show,
//!   so it is taken as is, with a warning that says so.
//! * **GCJ-02**, the offset datum of Amap and Tencent basemaps. A layout
//!   traced over one lies about 500 m from where it is drawn if read as
//!   WGS 84. No `crs` names it, so the planner says so with `?crs=gcj02`,
//!   and kerbside converts it ([`gcj02_to_wgs84`]). A layout exported in
//!   GCJ-02 ([`wgs84_to_gcj02`]) carries `"datum": "gcj02"`, which GDAL
//!   keeps, so that it is not sent back as WGS 84 by mistake.
//!
//! Anything else (a projected CRS in metres such as Web Mercator, EPSG:3857,
//! or a CGCS2000 Gauss-Kruger zone) is refused, naming it: reprojecting is
//! the GIS tool's work.

use geojson::{Bbox, FeatureCollection, Geometry, GeometryValue, JsonObject, JsonValue, Position};
use serde::Deserialize;

use super::layout::{LayoutProblem, ProblemCode};
use crate::spatial::gcj02;

/// The datum positions are sent or asked for in (`?crs=` on a layout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Datum {
    /// WGS 84, as stored (and CGCS2000, which agrees with it here).
    #[default]
    Wgs84,
    /// GCJ-02, converted on the way in and out.
    Gcj02,
}

/// A `crs` member kerbside takes: both are longitude/latitude in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclaredCrs {
    /// EPSG:4326 or OGC CRS84.
    Wgs84,
    /// EPSG:4490.
    Cgcs2000,
}

/// The foreign member that marks a layout exported in GCJ-02.
pub const DATUM_MEMBER: &str = "datum";

/// What a layout's top-level `crs` member declares: `None` when it has none
/// (or a null one), else WGS 84 or CGCS2000 under any of their usual
/// names (`EPSG:4326`, `urn:ogc:def:crs:EPSG::4326`,
/// `urn:ogc:def:crs:OGC:1.3:CRS84`, `http://www.opengis.net/def/crs/EPSG/0/4490`,
/// ...). Any other CRS is an `unsupported_crs` problem naming it.
///
/// ```
/// use kerbside::domain::crs::{DeclaredCrs, declared_crs};
/// let fc: geojson::FeatureCollection = serde_json::from_str(r#"{"type": "FeatureCollection",
///     "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4490"}}, "features": []}"#).unwrap();
/// assert_eq!(declared_crs(&fc).unwrap(), Some(DeclaredCrs::Cgcs2000));
/// ```
pub fn declared_crs(fc: &FeatureCollection) -> Result<Option<DeclaredCrs>, LayoutProblem> {
    let Some(crs) = fc.foreign_members.as_ref().and_then(|m| m.get("crs")) else {
        return Ok(None);
    };
    let name = match crs {
        JsonValue::Null => return Ok(None),
        JsonValue::String(s) => s.clone(),
        JsonValue::Object(o) => match named(o) {
            Some(n) => n,
            None => {
                return Err(unsupported(format!(
                    "the layout's crs {crs} does not name a CRS; kerbside reads longitude and latitude in WGS 84 (EPSG:4326) or CGCS2000 (EPSG:4490)"
                )));
            }
        },
        other => {
            return Err(unsupported(format!(
                "the layout's crs {other} does not name a CRS; kerbside reads longitude and latitude in WGS 84 (EPSG:4326) or CGCS2000 (EPSG:4490)"
            )));
        }
    };
    match authority_code(&name)
        .as_ref()
        .map(|(a, c)| (a.as_str(), c.as_str()))
    {
        Some(("epsg", "4326") | ("ogc", "crs84")) => Ok(Some(DeclaredCrs::Wgs84)),
        Some(("epsg", "4490")) => Ok(Some(DeclaredCrs::Cgcs2000)),
        _ => Err(unsupported(format!(
            "the layout's crs is {name:?}; kerbside reads longitude and latitude in WGS 84 (EPSG:4326) or CGCS2000 (EPSG:4490): reproject the layer to EPSG:4326 and send it again"
        ))),
    }
}

/// Whether the layout says it is in GCJ-02 (`"datum": "gcj02"`), as a
/// layout exported with `?crs=gcj02` does.
pub fn marked_gcj02(fc: &FeatureCollection) -> bool {
    fc.foreign_members
        .as_ref()
        .and_then(|m| m.get(DATUM_MEMBER))
        .and_then(JsonValue::as_str)
        .is_some_and(|d| d.eq_ignore_ascii_case("gcj02"))
}

fn unsupported(message: String) -> LayoutProblem {
    LayoutProblem {
        feature_id: None,
        code: ProblemCode::UnsupportedCrs,
        message,
    }
}

/// The name in `{"type": "name", "properties": {"name": ...}}`, or
/// `EPSG:code` for the older `{"type": "EPSG", "properties": {"code": ...}}`.
fn named(o: &JsonObject) -> Option<String> {
    let props = o.get("properties")?.as_object()?;
    match o.get("type")?.as_str()? {
        t if t.eq_ignore_ascii_case("name") => props.get("name")?.as_str().map(str::to_owned),
        t if t.eq_ignore_ascii_case("epsg") => match props.get("code")? {
            JsonValue::Number(n) => Some(format!("EPSG:{n}")),
            JsonValue::String(s) => Some(format!("EPSG:{s}")),
            _ => None,
        },
        _ => None,
    }
}

/// A CRS name as (authority, code), both lower case: `EPSG:4326`,
/// `urn:ogc:def:crs:EPSG:[version]:4326`,
/// `http://www.opengis.net/def/crs/EPSG/0/4326`, `CRS84`.
fn authority_code(name: &str) -> Option<(String, String)> {
    let lower = name.trim().to_ascii_lowercase();
    let pair = |a: &str, c: &str| Some((a.to_owned(), c.to_owned()));
    if let Some(rest) = lower.strip_prefix("urn:ogc:def:crs:") {
        return match rest.split(':').collect::<Vec<_>>().as_slice() {
            [a, c] | [a, _, c] => pair(a, c),
            _ => None,
        };
    }
    if let Some(rest) = lower
        .strip_prefix("http://www.opengis.net/def/crs/")
        .or_else(|| lower.strip_prefix("https://www.opengis.net/def/crs/"))
    {
        return match rest
            .trim_end_matches('/')
            .split('/')
            .collect::<Vec<_>>()
            .as_slice()
        {
            [a, _, c] => pair(a, c),
            _ => None,
        };
    }
    match lower.split_once(':') {
        Some((a, c)) => pair(a, c),
        None if lower == "crs84" => pair("ogc", "crs84"),
        None => None,
    }
}

/// Converts a GCJ-02 layout to WGS 84 in place: every position, bbox and
/// the first two numbers of each (heights stay), rounded to 1e-9 degree
/// (0.1 mm, the inverse's own accuracy), so an export in GCJ-02 that comes
/// back unedited is the stored layout again, within a millimetre.
pub fn gcj02_to_wgs84(fc: &mut FeatureCollection) {
    map_positions(fc, gcj02::gcj02_to_wgs84);
}

/// Converts a WGS 84 layout to GCJ-02 in place, for tracing over an Amap or
/// Tencent basemap, and marks it `"datum": "gcj02"`.
pub fn wgs84_to_gcj02(fc: &mut FeatureCollection) {
    map_positions(fc, gcj02::wgs84_to_gcj02);
    fc.foreign_members
        .get_or_insert_with(JsonObject::new)
        .insert(DATUM_MEMBER.into(), "gcj02".into());
}

fn map_positions(fc: &mut FeatureCollection, f: fn(f64, f64) -> (f64, f64)) {
    let round = |v: f64| (v * 1e9).round() / 1e9;
    let position = |p: &mut [f64]| {
        if let [x, y, ..] = p {
            let (lon, lat) = f(*x, *y);
            (*x, *y) = (round(lon), round(lat));
        }
    };
    let bbox = |b: &mut Bbox| match b.len() {
        4 => {
            position(&mut b[0..2]);
            position(&mut b[2..4]);
        }
        6 => {
            position(&mut b[0..2]);
            position(&mut b[3..5]);
        }
        _ => {}
    };
    fn walk(g: &mut Geometry, position: &dyn Fn(&mut [f64]), bbox: &dyn Fn(&mut Bbox)) {
        if let Some(b) = g.bbox.as_mut() {
            bbox(b);
        }
        let all = |ps: &mut Vec<Position>| ps.iter_mut().for_each(|p| position(p.as_slice_mut()));
        match &mut g.value {
            GeometryValue::Point { coordinates } => position(coordinates.as_slice_mut()),
            GeometryValue::MultiPoint { coordinates }
            | GeometryValue::LineString { coordinates } => all(coordinates),
            GeometryValue::MultiLineString { coordinates }
            | GeometryValue::Polygon { coordinates } => coordinates.iter_mut().for_each(all),
            GeometryValue::MultiPolygon { coordinates } => coordinates
                .iter_mut()
                .for_each(|p| p.iter_mut().for_each(all)),
            GeometryValue::GeometryCollection { geometries } => {
                geometries.iter_mut().for_each(|g| walk(g, position, bbox))
            }
        }
    }
    if let Some(b) = fc.bbox.as_mut() {
        bbox(b);
    }
    for feature in &mut fc.features {
        if let Some(b) = feature.bbox.as_mut() {
            bbox(b);
        }
        if let Some(g) = feature.geometry.as_mut() {
            walk(g, &position, &bbox);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_crs(crs: JsonValue) -> FeatureCollection {
        serde_json::from_value(json!({"type": "FeatureCollection", "crs": crs, "features": []}))
            .unwrap()
    }

    fn name(n: &str) -> FeatureCollection {
        with_crs(json!({"type": "name", "properties": {"name": n}}))
    }

    #[test]
    fn wgs84_and_cgcs2000_are_known_by_their_usual_names() {
        for n in [
            "EPSG:4326",
            "epsg:4326",
            "urn:ogc:def:crs:EPSG::4326",
            "urn:ogc:def:crs:EPSG:6.6:4326",
            "urn:ogc:def:crs:OGC:1.3:CRS84",
            "urn:ogc:def:crs:OGC::CRS84",
            "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
            "http://www.opengis.net/def/crs/EPSG/0/4326",
            "CRS84",
        ] {
            assert_eq!(declared_crs(&name(n)), Ok(Some(DeclaredCrs::Wgs84)), "{n}");
        }
        for n in [
            "EPSG:4490",
            "urn:ogc:def:crs:EPSG::4490",
            "https://www.opengis.net/def/crs/EPSG/0/4490",
        ] {
            assert_eq!(
                declared_crs(&name(n)),
                Ok(Some(DeclaredCrs::Cgcs2000)),
                "{n}"
            );
        }
        assert_eq!(
            declared_crs(&with_crs(
                json!({"type": "EPSG", "properties": {"code": 4490}})
            )),
            Ok(Some(DeclaredCrs::Cgcs2000))
        );
        assert_eq!(declared_crs(&with_crs(JsonValue::Null)), Ok(None));
        let none: FeatureCollection =
            serde_json::from_value(json!({"type": "FeatureCollection", "features": []})).unwrap();
        assert_eq!(declared_crs(&none), Ok(None));
    }

    #[test]
    fn any_other_crs_is_unsupported_and_named() {
        for n in [
            "urn:ogc:def:crs:EPSG::3857",
            "EPSG:4549",
            "EPSG:43260",
            "urn:ogc:def:crs:EPSG::4326:extra",
            "WGS 84",
            "",
        ] {
            let p = declared_crs(&name(n)).unwrap_err();
            assert_eq!(p.code, ProblemCode::UnsupportedCrs);
            assert_eq!(p.feature_id, None);
            assert!(p.message.contains(&format!("{n:?}")), "{}", p.message);
        }
        for crs in [
            json!({"type": "link", "properties": {"href": "http://example.com/crs/42"}}),
            json!(4326),
            json!({"type": "name"}),
        ] {
            let p = declared_crs(&with_crs(crs)).unwrap_err();
            assert_eq!(p.code, ProblemCode::UnsupportedCrs);
        }
    }

    #[test]
    fn a_gcj02_export_comes_back_within_a_millimetre_and_heights_stay() {
        let original: FeatureCollection = serde_json::from_value(json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": "b", "bbox": [120.7775543, 30.7604271, 120.7776206, 30.7604587],
             "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[
                [120.7775543, 30.7604365, 4.5], [120.7776161, 30.7604271, 4.5], [120.7776206, 30.7604493, 4.5],
                [120.7775589, 30.7604587, 4.5], [120.7775543, 30.7604365, 4.5]]]}}]}))
        .unwrap();
        let mut fc = original.clone();
        wgs84_to_gcj02(&mut fc);
        assert!(marked_gcj02(&fc));
        let moved = fc.features[0].geometry.as_ref().unwrap().value.clone();
        let GeometryValue::Polygon { coordinates } = &moved else {
            panic!()
        };
        // Several hundred metres east in Jiaxing.
        assert!(coordinates[0][0][0] - 120.7775543 > 0.003);
        assert_eq!(coordinates[0][0][2], 4.5);
        gcj02_to_wgs84(&mut fc);
        let back = fc.features[0].geometry.as_ref().unwrap();
        let GeometryValue::Polygon { coordinates: b } = &back.value else {
            panic!()
        };
        let GeometryValue::Polygon { coordinates: o } =
            &original.features[0].geometry.as_ref().unwrap().value
        else {
            panic!()
        };
        for (p, q) in b[0].iter().zip(&o[0]) {
            assert!(
                (p[0] - q[0]).abs() < 2e-9 && (p[1] - q[1]).abs() < 2e-9,
                "{p:?} {q:?}"
            );
            assert_eq!(p[2], q[2]);
        }
        let bb = fc.features[0].bbox.as_ref().unwrap();
        assert!((bb[2] - 120.7776206).abs() < 2e-9);
    }
}
