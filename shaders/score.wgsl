// Scores of c queries against m candidates, d dimensions each (row-major):
// s[i * m + j] = f(q_i, k_j) with f = q·k (kind 0), −‖q − k‖₂ (kind 1) or
// −‖q − k‖₁ (kind 2). One 16×16 workgroup computes a 16×16 block of scores,
// staging 16-wide slices of its queries and candidates in workgroup memory.

struct Params {
    c: u32,
    m: u32,
    d: u32,
    kind: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> s: array<f32>;

const TILE: u32 = 16u;

var<workgroup> q_tile: array<array<f32, 16>, 16>;
var<workgroup> k_tile: array<array<f32, 16>, 16>;

fn term(a: f32, b: f32) -> f32 {
    switch p.kind {
        case 0u: { return a * b; }
        case 1u: { let x = a - b; return x * x; }
        default: { return abs(a - b); }
    }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = wid.y * TILE + lid.y;
    let j = wid.x * TILE + lid.x;
    let q_row = wid.y * TILE + lid.y;
    let k_row = wid.x * TILE + lid.y;
    var acc = 0.0;
    for (var d0 = 0u; d0 < p.d; d0 += TILE) {
        let col = d0 + lid.x;
        var a = 0.0;
        var b = 0.0;
        if (q_row < p.c && col < p.d) { a = q[q_row * p.d + col]; }
        if (k_row < p.m && col < p.d) { b = k[k_row * p.d + col]; }
        q_tile[lid.y][lid.x] = a;
        k_tile[lid.y][lid.x] = b;
        workgroupBarrier();
        for (var t = 0u; t < TILE; t++) {
            acc += term(q_tile[lid.y][t], k_tile[lid.x][t]);
        }
        workgroupBarrier();
    }
    if (i < p.c && j < p.m) {
        switch p.kind {
            case 0u: { s[i * p.m + j] = acc; }
            case 1u: { s[i * p.m + j] = -sqrt(acc); }
            default: { s[i * p.m + j] = -acc; }
        }
    }
}
