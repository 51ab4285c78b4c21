// WGS84 → TWD97 / TM2 zone 121 (EPSG:3826): the transverse Mercator projection on GRS80 with
// central meridian 121°E, scale 0.9999 and a false easting of 250,000 m (Snyder, "Map
// Projections — A Working Manual", pp. 61–64). TWD97's datum and WGS84 agree to well under a
// metre, as EPSG:3826's own transformation assumes. The gateway (pyproj) gives the same figures
// for what it stores; this is for the pointer on the map.

const A = 6378137;
const F = 1 / 298.257222101;
const K0 = 0.9999;
const LON0 = (121 * Math.PI) / 180;
const FALSE_EASTING = 250000;
const E2 = F * (2 - F);
const EP2 = E2 / (1 - E2);

function meridianArc(phi: number): number {
  const e4 = E2 * E2;
  const e6 = e4 * E2;
  return (
    A *
    ((1 - E2 / 4 - (3 * e4) / 64 - (5 * e6) / 256) * phi -
      ((3 * E2) / 8 + (3 * e4) / 32 + (45 * e6) / 1024) * Math.sin(2 * phi) +
      ((15 * e4) / 256 + (45 * e6) / 1024) * Math.sin(4 * phi) -
      ((35 * e6) / 3072) * Math.sin(6 * phi))
  );
}

export function twd97(latitude: number, longitude: number): { x: number; y: number } {
  const phi = (latitude * Math.PI) / 180;
  const lambda = (longitude * Math.PI) / 180;
  const sin = Math.sin(phi);
  const cos = Math.cos(phi);
  const tan = Math.tan(phi);
  const n = A / Math.sqrt(1 - E2 * sin * sin);
  const t = tan * tan;
  const c = EP2 * cos * cos;
  const a = (lambda - LON0) * cos;
  const m = meridianArc(phi);
  const x =
    FALSE_EASTING +
    K0 * n * (a + ((1 - t + c) * a ** 3) / 6 + ((5 - 18 * t + t * t + 72 * c - 58 * EP2) * a ** 5) / 120);
  const y =
    K0 *
    (m +
      n *
        tan *
        ((a * a) / 2 +
          ((5 - t + 9 * c + 4 * c * c) * a ** 4) / 24 +
          ((61 - 58 * t + t * t + 600 * c - 330 * EP2) * a ** 6) / 720));
  return { x, y };
}
