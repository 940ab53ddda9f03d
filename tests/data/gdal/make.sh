#!/bin/sh
# Remakes the layouts of Qingfeng Road that GDAL wrote, used by
# tests/api/gis.rs. Run from anywhere, with GDAL's ogr2ogr (Debian's
# gdal-bin) installed:
#
#   tests/data/gdal/make.sh EXPORT
#
# EXPORT is what `GET /v1/roads/qingfeng-road/layout` answered for the
# shipped road (revision 1), e.g.
#   curl -s localhost:8080/v1/roads/qingfeng-road/layout > /tmp/qingfeng-road.geojson
# Remake them whenever geodata/qingfeng-road.geojson changes.
set -eu
export_file=$(realpath "$1")
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$export_file" "$tmp/qingfeng-road.geojson"
src="$tmp/qingfeng-road.geojson"

# The planner's round trip: QGIS keeps its edits in a GeoPackage.
ogr2ogr -f GPKG "$tmp/qingfeng-road.gpkg" "$src"
rm -f qingfeng-road.via-gpkg.geojson
ogr2ogr -f GeoJSON qingfeng-road.via-gpkg.geojson "$tmp/qingfeng-road.gpkg"

# GeoJSON to GeoJSON, written as RFC 7946 asks.
rm -f qingfeng-road.rfc7946.geojson
ogr2ogr -f GeoJSON -lco RFC7946=YES qingfeng-road.rfc7946.geojson "$src"

# CGCS2000, China's official datum: taken, with a warning.
rm -f qingfeng-road.epsg4490.geojson
ogr2ogr -f GeoJSON -t_srs EPSG:4490 qingfeng-road.epsg4490.geojson "$src"

# Projected, in metres: Web Mercator and a CGCS2000 Gauss-Kruger zone
# (3 degrees, central meridian 120 E). Both refused as unsupported_crs.
rm -f qingfeng-road.epsg3857.geojson qingfeng-road.epsg4549.geojson
ogr2ogr -f GeoJSON -t_srs EPSG:3857 qingfeng-road.epsg3857.geojson "$src"
ogr2ogr -f GeoJSON -t_srs EPSG:4549 qingfeng-road.epsg4549.geojson "$src"

ogr2ogr --version > GDAL_VERSION
