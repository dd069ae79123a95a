#!/usr/bin/env python3
"""Converts real public graphs into quiver's import format, for choosing
and checking the training defaults (issue 29). Nothing here is generated.

Social networks with engagement edges (typed edges, `quiver import
--create-types`; the social relation is the who-to-follow task):
  lastfm     HetRec 2011 Last.fm: 1,892 users, Friend (25,434, both
             directions) and Listens (92,834 user -> artist, weight = plays).
             From github.com/Coder-Yu/QRec, dataset/lastfm/{trusts,ratings}.txt.
  ciao       CiaoDVD (Guo et al. 2014): Trusts (40,133, directed), Rates
             (72,664 user -> movie, weight = stars), InGenre (movie -> genre).
             From github.com/npxiaoying/Social-Recommendation, dataset/CiaoDVD/.
  filmtrust  FilmTrust (Guo et al. 2013): Trusts (1,853, directed), Rates
             (35,497 user -> film, weight = stars). Same QRec repository.
Knowledge graphs (head, relation, tail; train / valid / test as published):
  codex-s, codex-m   CoDEx (Safavi and Koutra 2020), github.com/tsafavi/codex.

    python3 bench/realnets.py OUT [--mirrors DIR]

reads the repositories' snapshots as the `fetch` tool leaves them
(DIR/owner+name/repo, a bare git directory; default /work/.mirror) and
writes OUT/NAME/train.txt (and valid.txt, test.txt for the knowledge graphs).
"""

import argparse
import os
import subprocess
import sys


def show(mirrors, repo, path):
    git = os.path.join(mirrors, repo.replace("/", "+"), "repo")
    out = subprocess.run(["git", "--git-dir", git, "show", f"HEAD:{path}"], capture_output=True, check=True)
    return out.stdout.decode("utf-8").splitlines()


def fields(line):
    return line.replace(",", " ").split()


def write(out, name, file, lines):
    os.makedirs(os.path.join(out, name), exist_ok=True)
    with open(os.path.join(out, name, file), "w") as f:
        for line in lines:
            f.write(line + "\n")
    print(f"{name}/{file}: {len(lines)} lines", file=sys.stderr)


def lastfm(m):
    qrec = "Coder-Yu/QRec"
    edges = [f"User\tu{a}\tFriend\tUser\tu{b}\t1" for a, b, *_ in map(fields, show(m, qrec, "dataset/lastfm/trusts.txt"))]
    edges += [f"User\tu{a}\tListens\tArtist\ta{b}\t{w}" for a, b, w in map(fields, show(m, qrec, "dataset/lastfm/ratings.txt"))]
    return edges


def ciao(m):
    repo = "npxiaoying/Social-Recommendation"
    edges = [f"User\tu{a}\tTrusts\tUser\tu{b}\t1" for a, b, *_ in map(fields, show(m, repo, "dataset/CiaoDVD/trusts.txt"))]
    genres = {}
    for user, movie, genre, _review, stars, _date in map(fields, show(m, repo, "dataset/CiaoDVD/movie-ratings.txt")):
        edges.append(f"User\tu{user}\tRates\tMovie\tm{movie}\t{stars}")
        genres[movie] = genre
    edges += [f"Movie\tm{movie}\tInGenre\tGenre\tg{genre}\t1" for movie, genre in sorted(genres.items())]
    return edges


def filmtrust(m):
    qrec = "Coder-Yu/QRec"
    edges = [f"User\tu{a}\tTrusts\tUser\tu{b}\t1" for a, b, *_ in map(fields, show(m, qrec, "dataset/FilmTrust/trust.txt"))]
    edges += [f"User\tu{a}\tRates\tFilm\tf{b}\t{w}" for a, b, w in map(fields, show(m, qrec, "dataset/FilmTrust/ratings.txt"))]
    return edges


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--mirrors", default="/work/.mirror")
    a = p.parse_args()
    for name, convert in [("lastfm", lastfm), ("ciao", ciao), ("filmtrust", filmtrust)]:
        write(a.out, name, "train.txt", convert(a.mirrors))
    for name in ["codex-s", "codex-m"]:
        for split in ["train", "valid", "test"]:
            write(a.out, name, f"{split}.txt", show(a.mirrors, "tsafavi/codex", f"data/triples/{name}/{split}.txt"))


if __name__ == "__main__":
    main()
