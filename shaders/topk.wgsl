// The k best candidates of each query from a block of scores on the device
// (columns m0 .. m0 + mk of the whole candidate set): each of a workgroup's
// 64 threads keeps its own best k (k ≤ 32) over a strided share of the
// columns, then thread 0 merges them with the running best k of earlier
// pieces (best first; ties to the lower index, as the CPU's top-k does).

struct Params {
    c: u32,
    mk: u32,
    k: u32,
    m0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> s: array<f32>;
// Per query: k (score, index) pairs, kept across pieces; empty slots hold index 0xffffffff.
@group(0) @binding(2) var<storage, read_write> best_s: array<f32>;
@group(0) @binding(3) var<storage, read_write> best_i: array<u32>;

const NONE: u32 = 0xffffffffu;

var<workgroup> cand_s: array<f32, 2048>;
var<workgroup> cand_i: array<u32, 2048>;

// Whether (a, ai) ranks before (b, bi).
fn before(a: f32, ai: u32, b: f32, bi: u32) -> bool {
    if (bi == NONE) { return ai != NONE; }
    if (ai == NONE) { return false; }
    return a > b || (a == b && ai < bi);
}

// Inserts (v, idx) into a best-first list of p.k entries if it ranks in it.
fn insert(ls: ptr<function, array<f32, 32>>, li: ptr<function, array<u32, 32>>, v: f32, idx: u32) {
    if (!before(v, idx, (*ls)[p.k - 1u], (*li)[p.k - 1u])) { return; }
    var t = p.k - 1u;
    while (t > 0u && before(v, idx, (*ls)[t - 1u], (*li)[t - 1u])) {
        (*ls)[t] = (*ls)[t - 1u];
        (*li)[t] = (*li)[t - 1u];
        t -= 1u;
    }
    (*ls)[t] = v;
    (*li)[t] = idx;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = wid.x + wid.y * 65535u;
    if (row >= p.c) { return; }
    let lid = lid3.x;
    var ls: array<f32, 32>;
    var li: array<u32, 32>;
    for (var t = 0u; t < p.k; t++) { ls[t] = 0.0; li[t] = NONE; }
    for (var j = lid; j < p.mk; j += 64u) {
        let v = s[row * p.mk + j];
        let idx = p.m0 + j;
        if (v != v) { continue; } // NaN
        insert(&ls, &li, v, idx);
    }
    for (var t = 0u; t < p.k; t++) {
        cand_s[lid * p.k + t] = ls[t];
        cand_i[lid * p.k + t] = li[t];
    }
    workgroupBarrier();
    if (lid == 0u) {
        // Merge the 64 lists and the best so far by repeated selection.
        var out_s: array<f32, 32>;
        var out_i: array<u32, 32>;
        for (var t = 0u; t < p.k; t++) {
            out_s[t] = best_s[row * p.k + t];
            out_i[t] = best_i[row * p.k + t];
        }
        for (var c = 0u; c < 64u * p.k; c++) {
            insert(&out_s, &out_i, cand_s[c], cand_i[c]);
        }
        for (var t = 0u; t < p.k; t++) {
            best_s[row * p.k + t] = out_s[t];
            best_i[row * p.k + t] = out_i[t];
        }
    }
}
