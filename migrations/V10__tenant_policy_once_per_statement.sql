-- The tenant policies of V7 compared each row with `current_setting('app.tenant', true)`, a
-- STABLE function PostgreSQL calls again for every row a filter checks: on a search that ranks
-- every match it was 8–13 % of the database's CPU (docs/benchmarks.md, issue #18). Written as a
-- scalar subquery the setting is read once per statement (an InitPlan) and the rows are compared
-- with that value. What the policies allow is unchanged: the same tenant, the same behaviour
-- with no tenant set (NULL or '' equals no tenant's name), FORCEd as before.
ALTER POLICY tenant_isolation ON l0_raw
    USING (tenant = (SELECT current_setting('app.tenant', true)))
    WITH CHECK (tenant = (SELECT current_setting('app.tenant', true)));

ALTER POLICY tenant_isolation ON l2_insights
    USING (tenant = (SELECT current_setting('app.tenant', true)))
    WITH CHECK (tenant = (SELECT current_setting('app.tenant', true)));

ALTER POLICY tenant_isolation ON search_postings
    USING (tenant = (SELECT current_setting('app.tenant', true)))
    WITH CHECK (tenant = (SELECT current_setting('app.tenant', true)));
