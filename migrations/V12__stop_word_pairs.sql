-- Phrases made only of stop words answered from postings of word pairs (issue #18;
-- docs/architecture.md, "Search").
--
-- A phrase such as `"the and"` or `"to be"` is made of words that appear in most memories:
-- before, the full-text index named every memory holding both words (about half of them) and
-- each was checked row by row for the phrase and ranked (0.4–0.7 s on 1,000,000 turns). The
-- postings now also hold, per memory, each *pair* of adjacent lexemes of `search_tsv` that
-- are both common words — the lexeme is the two words with a space between, which no lexeme of
-- a vector can contain — with the number of positions where the pair occurs as its impact.
-- (Search engines call this "common grams".)
--
-- Why that bounds the relevance: `ts_rank_cd` scores a phrase by its covers, each at most the
-- largest weight (1.0) and each starting at a distinct position where the phrase — so each of
-- its adjacent pairs — occurs; so a memory's relevance for the phrase is at most the count of
-- any one of its pairs, and the search reads the pair's postings best first as it reads a word's
-- (crates/server/src/memory/postings.rs, "Phrases of common words").
--
-- The common words are a fixed list, written here so that what is stored never depends on
-- files that could change under a running database: PostgreSQL 15's English and German
-- stop-word lists, and the other language's stem of each (the branches of a query made only
-- of stop words, V11). Pairs are counted over positions, whatever the weights, so the
-- postings are a superset of what any branch of such a phrase matches.

CREATE FUNCTION search_pair_word(lexeme text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT lexeme = ANY ('{
        a, aber, about, abov, above, aft, after, again, against, al, all, alle, allem, allen,
        aller, alles, als, also, am, an, and, ander, andere, anderem, anderen, anderer, anderes,
        anderm, andern, anderr, anders, any, are, as, at, auch, auf, aus, be, becaus, because,
        been, befor, before, bei, being, below, betwe, between, bin, bis, bist, both, but, by, can,
        da, damit, dann, das, dasselb, dasselbe, dazu, daß, dein, deine, deinem, deinen, deiner,
        deines, dem, demselben, den, denn, denselben, der, derer, derselb, derselbe, derselben,
        des, desselben, dessen, dich, did, die, dies, diese, dieselb, dieselbe, dieselben, diesem,
        diesen, dieser, dieses, dir, do, doch, does, doing, don, dort, down, du, durch, during,
        each, ein, eine, einem, einen, einer, eines, einig, einige, einigem, einigen, einiger,
        einiges, einmal, er, es, etwa, etwas, euch, euer, eur, eure, eurem, euren, eurer, eures,
        few, for, from, furth, further, für, gegen, gewesen, hab, habe, haben, had, has, hat, hatt,
        hatte, hatten, hav, have, having, he, her, here, hers, herself, hier, him, himself, hin,
        hinter, his, how, i, ich, if, ihm, ihn, ihnen, ihr, ihre, ihrem, ihren, ihrer, ihres, im,
        in, indem, ins, into, is, ist, it, its, itself, jede, jedem, jeden, jeder, jedes, jene,
        jenem, jenen, jener, jenes, jetzt, just, kann, kein, keine, keinem, keinen, keiner, keines,
        können, könnte, machen, man, manch, manche, manchem, manchen, mancher, manches, me, mein,
        meine, meinem, meinen, meiner, meines, mich, mir, mit, mor, more, most, muss, musst,
        musste, my, myself, nach, nicht, nichts, no, noch, nor, not, now, nun, nur, ob, oder, of,
        off, ohn, ohne, on, onc, once, only, or, oth, other, our, ours, ourselv, ourselves, out,
        over, own, s, sam, same, sehr, sein, seine, seinem, seinen, seiner, seines, selbst, she,
        should, sich, sie, sind, so, solch, solche, solchem, solchen, solcher, solches, soll,
        sollt, sollte, som, some, sondern, sonst, such, t, than, that, the, their, theirs, them,
        themselv, themselves, then, ther, there, thes, these, they, this, thos, those, through, to,
        too, um, un, und, under, uns, unse, unsem, unsen, unser, unses, unter, until, up, very,
        viel, vom, von, vor, war, waren, warst, was, we, weg, weil, weiter, welch, welche, welchem,
        welchen, welcher, welches, wenn, wer, werd, werde, werden, were, what, when, wher, where,
        which, whil, while, who, whom, why, wie, wieder, will, wir, wird, wirst, with, wo, wollen,
        wollt, wollte, während, würde, würden, you, your, yours, yourself, yourselv, yourselves,
        zu, zum, zur, zwar, zwischen, über
    }'::text[])
$$;

-- The pairs of a `search_tsv`: each pair of common-word lexemes at adjacent positions, with the
-- number of positions where it occurs (every lexeme at a position is paired with every lexeme
-- at the next, as PostgreSQL's phrase operator pairs them).
CREATE FUNCTION search_pairs_of(doc tsvector) RETURNS TABLE (lexeme text, impact real)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    WITH w AS (
        SELECT t.lexeme, p.pos
        FROM unnest(doc) AS t CROSS JOIN LATERAL unnest(t.positions) AS p(pos)
        WHERE search_pair_word(t.lexeme)
    )
    SELECT a.lexeme || ' ' || b.lexeme, count(*)::real
    FROM w a JOIN w b ON b.pos = a.pos + 1
    GROUP BY 1
$$;

-- V6's postings of a vector, and its pairs. The triggers (V6, V7) store, replace and delete
-- what this returns, so from here on they keep the pairs too.
CREATE OR REPLACE FUNCTION search_postings_of(doc tsvector) RETURNS TABLE (lexeme text, impact real)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT t.lexeme,
           coalesce((SELECT sum(CASE w WHEN 'A' THEN 1.0 WHEN 'B' THEN 0.4 WHEN 'C' THEN 0.2 ELSE 0.1 END)
                     FROM unnest(t.weights) AS w), 0)::real
    FROM unnest(doc) AS t
    UNION ALL
    SELECT p.lexeme, p.impact FROM search_pairs_of(doc) AS p
$$;

-- The pairs of the memories stored before this migration, of every tenant: the policies are
-- FORCEd on the owner too (V7), so for this transaction they are not.
ALTER TABLE l0_raw NO FORCE ROW LEVEL SECURITY;
ALTER TABLE l2_insights NO FORCE ROW LEVEL SECURITY;
ALTER TABLE search_postings NO FORCE ROW LEVEL SECURITY;
INSERT INTO search_postings (tenant, layer, lexeme, impact, created_at, id)
SELECT r.tenant, 'r', p.lexeme, p.impact, r.created_at, r.id
FROM l0_raw r CROSS JOIN LATERAL search_pairs_of(r.search_tsv) p;
INSERT INTO search_postings (tenant, layer, lexeme, impact, created_at, id)
SELECT i.tenant, 'i', p.lexeme, p.impact, i.created_at, i.id
FROM l2_insights i CROSS JOIN LATERAL search_pairs_of(i.search_tsv) p;
ALTER TABLE l0_raw FORCE ROW LEVEL SECURITY;
ALTER TABLE l2_insights FORCE ROW LEVEL SECURITY;
ALTER TABLE search_postings FORCE ROW LEVEL SECURITY;
