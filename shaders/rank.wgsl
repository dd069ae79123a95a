// Filtered ranks from a block of scores that stays on the device: for query i,
// how many candidates of this piece (columns m0 .. m0 + mk of the whole
// candidate set) score above its answer and how many tie with it, leaving out
// the answer and the candidates known to be true (the filter). Counts add up
// over pieces, so out[2i] and out[2i + 1] accumulate across dispatches.
//
// The answer's score is recomputed here in the same order as score.wgsl sums
// (l = 0 .. d − 1), so it equals the score the tiles computed bit for bit.

struct Params {
    c: u32,
    mk: u32,
    d: u32,
    kind: u32,
    m0: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
// The answers' rows, one per query.
@group(0) @binding(2) var<storage, read> ans_rows: array<f32>;
@group(0) @binding(3) var<storage, read> s: array<f32>;
// answer[c] | filter offsets[c + 1] | filter entries (sorted per query)
@group(0) @binding(4) var<storage, read> info: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<u32>;

var<workgroup> greater: atomic<u32>;
var<workgroup> equal: atomic<u32>;
var<workgroup> truth: f32;

fn term(a: f32, b: f32) -> f32 {
    switch p.kind {
        case 0u: { return a * b; }
        case 1u: { let x = a - b; return x * x; }
        default: { return abs(a - b); }
    }
}

fn filtered(i: u32, cand: u32) -> bool {
    var lo = info[p.c + i];
    var hi = info[p.c + i + 1u];
    let base = 2u * p.c + 1u;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        let v = info[base + mid];
        if (v == cand) { return true; }
        if (v < cand) { lo = mid + 1u; } else { hi = mid; }
    }
    return false;
}

// One workgroup per query (x + y·65535).
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let i = wid.x + wid.y * 65535u;
    if (i >= p.c) { return; }
    let lid = lid3.x;
    if (lid == 0u) {
        atomicStore(&greater, 0u);
        atomicStore(&equal, 0u);
        var acc = 0.0;
        for (var l = 0u; l < p.d; l++) {
            acc += term(q[i * p.d + l], ans_rows[i * p.d + l]);
        }
        switch p.kind {
            case 0u: { truth = acc; }
            case 1u: { truth = -sqrt(acc); }
            default: { truth = -acc; }
        }
    }
    workgroupBarrier();
    let t = truth;
    let answer = info[i];
    var gt = 0u;
    var eq = 0u;
    for (var j = lid; j < p.mk; j += 64u) {
        let cand = p.m0 + j;
        if (cand == answer) { continue; }
        let v = s[i * p.mk + j];
        if (v > t && !filtered(i, cand)) { gt += 1u; }
        if (v == t && !filtered(i, cand)) { eq += 1u; }
    }
    atomicAdd(&greater, gt);
    atomicAdd(&equal, eq);
    workgroupBarrier();
    if (lid == 0u) {
        out[2u * i] += atomicLoad(&greater);
        out[2u * i + 1u] += atomicLoad(&equal);
    }
}
