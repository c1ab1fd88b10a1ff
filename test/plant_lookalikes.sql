-- Run by t/024_search_path.pl as a database owner who is not a superuser:
-- plant in public a look-alike of each operator and function that the
-- extension's SQL may call, for every argument type from the list below
-- that pg_catalog accepts only through an implicit cast or a polymorphic
-- type.  An exact match in public wins over such a pg_catalog object for a
-- caller whose search_path has public.  Each look-alike records the call
-- and tries to make the owner a superuser, which succeeds only when a
-- superuser calls it.  @NAMES@ is replaced by the function names to
-- imitate.

CREATE TABLE public.lookalikes (kind text, signature text);
CREATE TABLE public.lookalike_calls (what text, who name, at timestamptz);
GRANT INSERT ON public.lookalike_calls TO PUBLIC;

CREATE FUNCTION public.lookalike_called(what text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO public.lookalike_calls VALUES (what, current_user, clock_timestamp());
    RAISE WARNING 'look-alike % called by %', what, current_user;
    BEGIN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
END;
$$;

-- The types of the values the extension works with.
CREATE TEMP TABLE kinds (t regtype);
INSERT INTO kinds VALUES
    ('smallint'), ('integer'), ('bigint'), ('numeric'), ('real'),
    ('double precision'), ('text'), ('character varying'), ('character'),
    ('name'), ('boolean'), ('timestamp with time zone'),
    ('timestamp without time zone'), ('date'), ('interval'), ('jsonb'),
    ('json'), ('uuid'), ('oid'), ('bytea'), ('text[]'), ('bigint[]'),
    ('integer[]'), ('double precision[]'), ('timestamp with time zone[]'),
    ('character varying[]'), ('boolean[]'), ('uuid[]'), ('jsonb[]');

-- Does a value of type a go to a parameter of type p without an explicit
-- cast?  With a polymorphic p, what does p become (NULL: it does not go)?
CREATE FUNCTION pg_temp.fits(a regtype, p regtype) RETURNS regtype
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN a = p THEN a
        WHEN p IN ('anyelement'::regtype, 'anycompatible'::regtype, '"any"'::regtype) THEN a
        WHEN p = 'anynonarray'::regtype
             AND (SELECT typelem = 0 OR typlen <> -1 FROM pg_type WHERE oid = a) THEN a
        WHEN p IN ('anyarray'::regtype, 'anycompatiblearray'::regtype)
             AND (SELECT typelem <> 0 AND typlen = -1 FROM pg_type WHERE oid = a) THEN a
        WHEN EXISTS (SELECT FROM pg_cast WHERE castsource = a AND casttarget = p
                                           AND castcontext = 'i') THEN p
    END::regtype
$$;

-- The concrete type of a polymorphic result, given the type that a
-- polymorphic argument became.
CREATE FUNCTION pg_temp.resolve(r regtype, poly regtype) RETURNS regtype
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN r IN ('anyelement'::regtype, 'anycompatible'::regtype, 'anynonarray'::regtype)
        THEN coalesce((SELECT nullif(typelem, 0) FROM pg_type
                        WHERE oid = poly AND typlen = -1), poly)
        WHEN r IN ('anyarray'::regtype, 'anycompatiblearray'::regtype)
        THEN CASE WHEN (SELECT typelem <> 0 AND typlen = -1 FROM pg_type WHERE oid = poly)
                  THEN poly
                  ELSE (SELECT typarray FROM pg_type WHERE oid = poly) END
        ELSE r END::regtype
$$;

DO $plant$
DECLARE
    o       record;
    fn      record;
    sig     text;
    n       integer := 0;
BEGIN
    SET LOCAL search_path = pg_catalog, pg_temp;

    -- Operators: (left, right) pairs with no exact operator in pg_catalog
    -- but one that they reach by a cast
    FOR o IN
        SELECT DISTINCT ON (op.oprname, l.t, r.t)
               op.oprname, l.t AS lt, r.t AS rt,
               pg_temp.resolve(op.oprresult,
                               coalesce(nullif(pg_temp.fits(l.t, op.oprleft), op.oprleft), l.t)) AS res
          FROM pg_operator op, kinds l, kinds r
         WHERE op.oprnamespace = 'pg_catalog'::regnamespace
           AND op.oprkind = 'b'
           AND op.oprname IN ('=', '<>', '<', '>', '<=', '>=', '+', '-', '*', '/',
                              '%', '||', '?', '?|', '?&', '->', '->>', '#>', '#>>',
                              '@>', '<@', '&&', '~~', '~~*', '!~~', '~', '!~', '^')
           AND pg_temp.fits(l.t, op.oprleft) IS NOT NULL
           AND pg_temp.fits(r.t, op.oprright) IS NOT NULL
           AND NOT EXISTS (SELECT FROM pg_operator x
                            WHERE x.oprnamespace = 'pg_catalog'::regnamespace
                              AND x.oprname = op.oprname
                              AND x.oprleft = l.t AND x.oprright = r.t)
         ORDER BY op.oprname, l.t, r.t, op.oid
    LOOP
        n := n + 1;
        sig := format('%s(%s,%s)', o.oprname, o.lt, o.rt);
        EXECUTE format($f$CREATE FUNCTION public.lookalike_op_%s(%s, %s) RETURNS %s
            LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
            AS $b$ BEGIN PERFORM public.lookalike_called(%L); RETURN NULL; END $b$$f$,
            n, o.lt, o.rt, o.res, sig);
        EXECUTE format('CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.lookalike_op_%s)',
                       o.oprname, o.lt, o.rt, n);
        INSERT INTO public.lookalikes VALUES ('operator', sig);
    END LOOP;

    -- Functions and aggregates with the names the extension calls: for
    -- each argument, each type that reaches it by a cast (polymorphic
    -- arguments all become the same type); a variadic "any" also takes
    -- a text and a value, as in jsonb_build_object('key', value), and two
    -- "any" arguments a text and a value, as in jsonb_object_agg(key, value)
    CREATE TEMP TABLE variants AS
    WITH f AS (
        SELECT p.proname, p.prokind, p.proretset, p.prorettype,
               ARRAY(SELECT unnest(p.proargtypes::regtype[])) AS argtypes, p.provariadic,
               coalesce(a.aggkind, 'n') AS aggkind
          FROM pg_proc p
          LEFT JOIN pg_aggregate a ON a.aggfnoid = p.oid
         WHERE p.pronamespace = 'pg_catalog'::regnamespace
           AND p.proname IN (@NAMES@)
           AND p.prokind IN ('f', 'a')
           AND p.pronargs BETWEEN 1 AND 3
           AND (a.aggkind IS NULL OR a.aggkind = 'n'
                OR (a.aggkind = 'o' AND a.aggnumdirectargs = 1 AND p.pronargs = 2))
    ), v AS (
        SELECT f.*, k.t,
               (SELECT array_agg(CASE WHEN i = pos
                                        OR (f.argtypes[pos]::text IN ('anyelement', 'anyarray', 'anynonarray', 'anycompatible', 'anycompatiblearray')
                                            AND f.argtypes[i] = f.argtypes[pos])
                                      THEN k.t ELSE f.argtypes[i] END ORDER BY i)
                  FROM generate_subscripts(f.argtypes, 1) i) AS args
          FROM f, generate_subscripts(f.argtypes, 1) pos, kinds k
         WHERE pg_temp.fits(k.t, f.argtypes[pos]) IS NOT NULL
           AND k.t <> f.argtypes[pos]
        UNION ALL
        SELECT f.*, k.t,
               f.argtypes[1:array_length(f.argtypes, 1) - 1] || ARRAY['text'::regtype, k.t]
          FROM f, kinds k
         WHERE f.provariadic = '"any"'::regtype
        UNION ALL
        SELECT f.*, v.t, ARRAY[k.t, v.t]
          FROM f, kinds k, kinds v
         WHERE f.argtypes = ARRAY['"any"', '"any"']::regtype[]
           AND k.t IN ('text', 'character varying', 'name')
    )
    SELECT DISTINCT ON (proname, args)
           proname, prokind, aggkind, proretset, args,
           pg_temp.resolve(prorettype, t) AS ret
      FROM v
     WHERE NOT EXISTS (SELECT FROM unnest(args) x
                        WHERE x::text IN ('anyelement', 'anyarray', 'anynonarray', 'anycompatible', 'anycompatiblearray', '"any"'))
       AND NOT EXISTS (SELECT FROM pg_proc x
                        WHERE x.pronamespace = 'pg_catalog'::regnamespace
                          AND x.proname = v.proname
                          AND ARRAY(SELECT unnest(x.proargtypes::regtype[])) = v.args)
       AND pg_temp.resolve(prorettype, t)::text NOT IN ('internal', 'record', 'trigger', '"any"');

    FOR fn IN SELECT * FROM variants LOOP
        sig := format('%s(%s)', fn.proname,
                      (SELECT string_agg(x::text, ',') FROM unnest(fn.args) x));
        n := n + 1;
        IF fn.prokind = 'f' THEN
            EXECUTE format($f$CREATE FUNCTION public.%I(%s) RETURNS %s %s
                LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
                AS $b$ BEGIN PERFORM public.lookalike_called(%L); %s END $b$$f$,
                fn.proname,
                (SELECT string_agg(x::text, ', ') FROM unnest(fn.args) x),
                CASE WHEN fn.proretset THEN 'SETOF' ELSE '' END, fn.ret, sig,
                CASE WHEN fn.proretset OR fn.ret = 'void'::regtype THEN 'RETURN;' ELSE 'RETURN NULL;' END);
        ELSIF fn.aggkind = 'n' THEN
            EXECUTE format($f$CREATE FUNCTION public.lookalike_agg_%s(%s, %s) RETURNS %s
                LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
                AS $b$ BEGIN PERFORM public.lookalike_called(%L); RETURN NULL; END $b$$f$,
                n, fn.ret, (SELECT string_agg(x::text, ', ') FROM unnest(fn.args) x),
                fn.ret, sig);
            EXECUTE format('CREATE AGGREGATE public.%I(%s) (SFUNC = public.lookalike_agg_%s, STYPE = %s)',
                           fn.proname,
                           (SELECT string_agg(x::text, ', ') FROM unnest(fn.args) x),
                           n, fn.ret);
        ELSE
            -- ordered-set with one direct argument: f(direct) WITHIN GROUP (ORDER BY x)
            EXECUTE format($f$CREATE FUNCTION public.lookalike_agg_%s(text, %s) RETURNS text
                LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
                AS $b$ BEGIN PERFORM public.lookalike_called(%L); RETURN NULL; END $b$$f$,
                n, fn.args[2], sig);
            EXECUTE format($f$CREATE FUNCTION public.lookalike_final_%s(text, %s, %s) RETURNS %s
                LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
                AS $b$ BEGIN PERFORM public.lookalike_called(%L); RETURN NULL; END $b$$f$,
                n, fn.args[1], fn.args[2], fn.ret, sig);
            EXECUTE format('CREATE AGGREGATE public.%I(%s ORDER BY %s) (SFUNC = public.lookalike_agg_%s, STYPE = text, FINALFUNC = public.lookalike_final_%s, FINALFUNC_EXTRA)',
                           fn.proname, fn.args[1], fn.args[2], n, n);
        END IF;
        INSERT INTO public.lookalikes VALUES ('function', sig);
    END LOOP;
END;
$plant$;
