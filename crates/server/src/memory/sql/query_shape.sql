-- Why a search found nothing: a query without any word (only punctuation), or one whose only
-- words are excluded (`-word`), which could match almost everything and is refused.
SELECT numnode(q) = 0 AS empty, querytree(q) = 'T' AS unindexable
FROM search_query($1, $2) AS q
