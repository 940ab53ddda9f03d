-- The city of benches/city.rs in PostGIS: the same street grid, bays,
-- kinds and free bays (the same integer hash), one row per bay with its
-- outline in WGS 84 and a GiST index.
--
-- psql -v bays=1000000 -v free_percent=40 -f city.sql

\set ON_ERROR_STOP on
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS postgis;

DROP TABLE IF EXISTS bays;
DROP TABLE IF EXISTS city;

-- n street lines each way; the local frame of kerbside::spatial::LocalFrame
-- at the south-west corner (120.70, 30.70): metres per degree from the
-- WGS 84 radii of curvature.
CREATE TABLE city AS
SELECT n, (n - 1) * 100.0 AS extent_m, 120.70::float8 AS lon0, 30.70::float8 AS lat0,
       6378137.0 / w * cos(phi) * pi() / 180 AS m_per_deg_lon,
       6378137.0 * (1 - 6.69437999014e-3) / (w * w * w) * pi() / 180 AS m_per_deg_lat
FROM (SELECT radians(30.70) AS phi,
             sqrt(1 - 6.69437999014e-3 * sin(radians(30.70)) ^ 2) AS w) f,
     (SELECT min(n) AS n FROM generate_series(2, 100000) n
       WHERE 2::bigint * n * (n - 1) * 24 >= :bays) g;

CREATE TABLE bays AS
WITH parts AS (
    SELECT dir, line, block, side, k,
           ((((dir * c.n + line) * (c.n - 1) + block) * 2 + side) * 12 + k)::bigint AS g,
           block * 100.0 + 10 + k * 6.5 AS s0,
           CASE side WHEN 0 THEN 5.0 ELSE -7.5 END AS a0
    FROM city c,
         generate_series(0, 1) dir,
         generate_series(0, c.n - 1) line,
         generate_series(0, c.n - 2) block,
         generate_series(0, 1) side,
         generate_series(0, 11) k
), named AS (
    SELECT p.*,
           format('%s-%s-%s', CASE dir WHEN 0 THEN 'ew' ELSE 'ns' END,
                  lpad(line::text, 3, '0'), lpad((block / 10)::text, 2, '0')) AS road_id,
           CASE dir WHEN 0 THEN (CASE side WHEN 0 THEN 'n' ELSE 's' END)
                    ELSE (CASE side WHEN 0 THEN 'e' ELSE 'w' END) END AS side_letter,
           -- x and y ranges in metres east and north of the corner
           CASE dir WHEN 0 THEN s0 ELSE line * 100.0 + a0 END AS x0,
           CASE dir WHEN 0 THEN s0 + 6 ELSE line * 100.0 + a0 + 2.5 END AS x1,
           CASE dir WHEN 0 THEN line * 100.0 + a0 ELSE s0 END AS y0,
           CASE dir WHEN 0 THEN line * 100.0 + a0 + 2.5 ELSE s0 + 6 END AS y1
    FROM parts p
    WHERE g < :bays
)
SELECT format('%s-%s-%s-%s', road_id, side_letter, lpad(block::text, 3, '0'),
              lpad(k::text, 2, '0')) AS bay_id,
       road_id,
       CASE g % 50 WHEN 0 THEN 'accessible' WHEN 10 THEN 'ev' WHEN 25 THEN 'loading'
                   WHEN 40 THEN 'motorcycle' ELSE 'standard' END AS kind,
       CASE g % 50 WHEN 0 THEN NULL WHEN 10 THEN 240 WHEN 25 THEN 30 ELSE 120 END AS max_stay_minutes,
       (g * 2654435761) % 4294967296 % 100 < :free_percent AS free,
       ST_MakeEnvelope(c.lon0 + x0 / c.m_per_deg_lon, c.lat0 + y0 / c.m_per_deg_lat,
                       c.lon0 + x1 / c.m_per_deg_lon, c.lat0 + y1 / c.m_per_deg_lat,
                       4326) AS geom
FROM named, city c;

ALTER TABLE bays ADD PRIMARY KEY (bay_id);
CREATE INDEX bays_geom ON bays USING gist (geom);
VACUUM ANALYZE bays;
SELECT count(*) AS bays, count(*) FILTER (WHERE free) AS free FROM bays;
