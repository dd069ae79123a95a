//! A generator for a small TwHIN-like heterogeneous network, the built-in
//! default that `quiver demo` (and `make demo`) runs on.
//!
//! Users fall into communities; most of what a user follows, favorites,
//! retweets, replies to and clicks comes from their own community, so the
//! network carries signal for embeddings. Seeded: the same seed gives the same
//! file.

use std::io::Write;

/// Node types of the network.
pub const NODE_TYPES: [&str; 4] = ["User", "Tweet", "Advertiser", "Ad"];

/// Relations and their endpoint types, as in the TwHIN talk.
pub const RELATIONS: [(&str, &str, &str); 7] = [
    ("Follows", "User", "User"),
    ("Authors", "User", "Tweet"),
    ("Favorites", "User", "Tweet"),
    ("Replies", "User", "Tweet"),
    ("Retweets", "User", "Tweet"),
    ("Promotes", "Advertiser", "Ad"),
    ("Clicks", "User", "Ad"),
];

/// Sizes of the generated network.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Number of users.
    pub users: u32,
    /// Number of communities users fall into.
    pub communities: u32,
    /// Tweets authored per user.
    pub tweets_per_user: u32,
    /// Number of advertisers (each promotes 4 ads).
    pub advertisers: u32,
    /// Follows per user.
    pub follows_per_user: u32,
    /// Engagements (favorite, retweet, reply) per user.
    pub engagements_per_user: u32,
    /// Seed.
    pub seed: u64,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            users: 2000,
            communities: 50,
            tweets_per_user: 3,
            advertisers: 50,
            follows_per_user: 4,
            engagements_per_user: 20,
            seed: 42,
        }
    }
}

/// splitmix64: small, seeded, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % n.max(1) as u64) as u32
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

/// Writes the network as typed edge lines
/// (`src_type, src_key, relation, dst_type, dst_key, weight`).
pub fn write(shape: &Shape, out: &mut impl Write) -> std::io::Result<u64> {
    let mut rng = Rng(shape.seed);
    let c = shape.communities.max(1);
    let community = |u: u32| u % c;
    // A user of community k: k + c * i.
    let per_c = shape.users.div_ceil(c);
    let pick_user_in = |rng: &mut Rng, k: u32| -> u32 {
        let u = k + c * rng.below(per_c);
        if u < shape.users {
            u
        } else {
            k
        }
    };
    let mut n = 0u64;
    let mut line = |out: &mut dyn Write, s: (&str, String), r: &str, d: (&str, String), w: f32| {
        n += 1;
        writeln!(out, "{}\t{}\t{r}\t{}\t{}\t{w}", s.0, s.1, d.0, d.1)
    };
    let tweets = shape.users * shape.tweets_per_user;
    for u in 0..shape.users {
        for k in 0..shape.tweets_per_user {
            line(
                out,
                ("User", format!("u{u}")),
                "Authors",
                ("Tweet", format!("t{}", u * shape.tweets_per_user + k)),
                1.0,
            )?;
        }
    }
    // Each user has a home community and a second interest (the reason for
    // mixtures): follows go 55% home, 30% to the second, 15% anywhere.
    let second = |u: u32| (community(u) + 1 + (u / c) % (c - 1).max(1)) % c;
    let interest = |rng: &mut Rng, u: u32, home_share: f64, second_share: f64| {
        let x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        if x < home_share {
            community(u)
        } else if x < home_share + second_share {
            second(u)
        } else {
            rng.below(c)
        }
    };
    for u in 0..shape.users {
        for _ in 0..shape.follows_per_user {
            let k = interest(&mut rng, u, 0.55, 0.30);
            let v = pick_user_in(&mut rng, k);
            if v != u {
                line(
                    out,
                    ("User", format!("u{u}")),
                    "Follows",
                    ("User", format!("u{v}")),
                    1.0,
                )?;
            }
        }
        for _ in 0..shape.engagements_per_user {
            let k = interest(&mut rng, u, 0.5, 0.3);
            let author = pick_user_in(&mut rng, k);
            let t = author * shape.tweets_per_user + rng.below(shape.tweets_per_user);
            let rel = ["Favorites", "Favorites", "Retweets", "Replies"][rng.below(4) as usize];
            let w = 1.0 + rng.below(3) as f32;
            if t < tweets {
                line(out, ("User", format!("u{u}")), rel, ("Tweet", format!("t{t}")), w)?;
            }
        }
    }
    let ads = shape.advertisers * 4;
    for a in 0..shape.advertisers {
        for k in 0..4 {
            line(
                out,
                ("Advertiser", format!("a{a}")),
                "Promotes",
                ("Ad", format!("ad{}", a * 4 + k)),
                1.0,
            )?;
        }
    }
    for u in 0..shape.users {
        if rng.chance(0.5) {
            // Ads are aimed at communities: ad i suits community i % c.
            let target = community(u) + c * rng.below(ads.div_ceil(c));
            let ad = if target < ads { target } else { rng.below(ads) };
            line(
                out,
                ("User", format!("u{u}")),
                "Clicks",
                ("Ad", format!("ad{ad}")),
                1.0,
            )?;
        }
    }
    Ok(n)
}

/// Creates the demo schema in `db`.
pub fn create_schema(db: &crate::Database) -> crate::Result<()> {
    for t in NODE_TYPES {
        db.create_node_type(t)?;
    }
    for (r, s, d) in RELATIONS {
        db.create_relation_type(r, s, d)?;
    }
    Ok(())
}
