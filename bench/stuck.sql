-- The job ids `charfix list-stuck` shows, computed by the database in one statement: the limit that
-- charfix is measured against. It follows charfix's diagnosis (docs/diagnosis.md) closely enough to
-- give the same set on the benchmark's data; run.py checks that it does on every list-stuck run.
-- Objects are read from storage.objects, where Supabase keeps the listing of every bucket. The
-- replaceable-image rule is the one of docs/diagnosis.md, rules 1 to 8, except that a URL's path is
-- not percent-decoded (the benchmark's URLs hold no escapes).
--
-- Parameters: since, now (timestamptz), stuck_after, link_window (interval).
-- Shown: portrait jobs that are not saved, not in progress, and not failed for real (failed or
-- cancelled with no output at all).
with
portrait as (
    select j.id, j.user_id, j.status, j.created_at, j.metadata,
           j.user_id::text || '/' || j.id::text || '_' as prefix
    from jobs j
    where j.created_at >= %(since)s
      and (j.metadata->>'destination' = 'character_portrait' or j.metadata->>'source' = 'character_portrait')
),
request as (
    select p.*,
           case when jsonb_typeof(p.metadata->'character_id') = 'string'
                 and lower(btrim(p.metadata->>'character_id', E' \t\n\r'))
                     ~ '^\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$'
                then btrim(p.metadata->>'character_id', E' \t\n\r')::uuid end as character_id,
           case when jsonb_typeof(p.metadata->'character_name') = 'string'
                 and btrim(p.metadata->>'character_name', E' \t\n\r') <> '' then p.metadata->>'character_name'
                when jsonb_typeof(p.metadata->'characterName') = 'string'
                 and btrim(p.metadata->>'characterName', E' \t\n\r') <> '' then p.metadata->>'characterName'
           end as character_name
    from portrait p
),
own_asset as (  -- every workspace asset of the job's own user
    select a.job_id, a.id, a.user_id, a.asset_index, a.created_at, btrim(a.temp_storage_path, E' \t\n\r') as path
    from workspace_assets a join portrait p on p.id = a.job_id and p.user_id = a.user_id
),
first_asset as (
    select distinct on (job_id) job_id, path,
           lower(path) like 'http://%%' or lower(path) like 'https://%%' as is_url
    from own_asset order by job_id, asset_index, created_at
),
foreign_asset as (
    select distinct a.job_id from workspace_assets a join portrait p on p.id = a.job_id and p.user_id <> a.user_id
),
temp_objects as (  -- workspace-temp/{user}/{job}_*
    select p.id as job_id, min(o.name) filter (where o.name not like '%%.thumb.webp') as main,
           array_agg(o.name) as names
    from portrait p join storage.objects o on o.bucket_id = 'workspace-temp' and left(o.name, 74) = p.prefix
    group by p.id
),
library_objects as (  -- user-library/{user}/{job}_*: a copy made, and for which character
    select p.id as job_id, p.user_id, p.created_at, o.name,
           case when regexp_replace(substr(o.name, 75), '\.[^./]*$', '')
                     ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                then regexp_replace(substr(o.name, 75), '\.[^./]*$', '')::uuid end as character_id
    from portrait p join storage.objects o on o.bucket_id = 'user-library' and left(o.name, 74) = p.prefix
    where o.name not like '%%.thumb.webp'
),
copied as (
    select lo.job_id, bool_or(true) as any_copy,
           (array_agg(c.id) filter (where c.user_id = lo.user_id and c.created_at < lo.created_at))[1] as older_id
    from library_objects lo left join characters c on c.id = lo.character_id
    group by lo.job_id
),
asset_rows as materialized (  -- rows named after an asset ({user}/{asset}.ext): one hash join of two
    select a.job_id, a.user_id, l.id as row_id, l.storage_path  -- whole tables, not a lookup per asset
    from workspace_assets a join user_library l
      on left(l.storage_path, 73) collate "C" = a.user_id::text || '/' || a.id::text  -- the key holds the user
    where l.user_id::text = a.user_id::text
),
row_ids as (  -- library rows of the job: by key, by recorded job id, or by asset id (manual save)
    select p.id as job_id, l.id
    from portrait p join user_library l on l.user_id = p.user_id and left(l.storage_path, 74) = p.prefix
    union
    select p.id, l.id
    from portrait p join user_library l on l.user_id = p.user_id and p.id = coalesce(
        case when jsonb_typeof(l.roleplay_metadata->'job_id') = 'string'
              and lower(l.roleplay_metadata->>'job_id') ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
             then (l.roleplay_metadata->>'job_id')::uuid end,
        case when jsonb_typeof(l.generation_metadata->'job_id') = 'string'
              and lower(l.generation_metadata->>'job_id') ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
             then (l.generation_metadata->>'job_id')::uuid end)
    union
    select s.job_id, s.row_id
    from asset_rows s join portrait p on p.id = s.job_id and p.user_id = s.user_id
    where length(s.storage_path) = 73  -- posixpath.splitext(storage_path)[0] is the stem
       or (substr(s.storage_path, 74, 1) = '.' and strpos(substr(s.storage_path, 75), '.') = 0
           and strpos(substr(s.storage_path, 75), '/') = 0)
),
job_rows as (
    select r.job_id, l.id, l.created_at, l.storage_path,
           coalesce(l.roleplay_metadata->>'type' = 'character_portrait', false)
             or coalesce('character' = any(l.tags), false)
             or coalesce(l.content_category = 'character', false) as visible,
           o.name is not null as has_object,
           case when c.user_id = p.user_id then c.id end as own_character_id
    from row_ids r
    join user_library l on l.id = r.id
    join portrait p on p.id = r.job_id
    left join storage.objects o on o.bucket_id = 'user-library' and o.name = l.storage_path
    left join characters c on c.id = coalesce(l.character_id, case
        when jsonb_typeof(l.roleplay_metadata->'character_id') = 'string'
         and lower(l.roleplay_metadata->>'character_id') ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
        then (l.roleplay_metadata->>'character_id')::uuid end)
),
rows_by_job as (
    select job_id,
           count(*) filter (where visible) as visible_rows,
           (array_agg(storage_path order by created_at, id::text) filter (where visible))[1] as visible_key,
           (array_agg(has_object order by created_at, id::text) filter (where visible))[1] as visible_has_object,
           (array_agg(own_character_id order by created_at, id::text)
               filter (where visible and own_character_id is not null))[1] as bound_id,
           bool_or(has_object) as any_row_object
    from job_rows group by job_id
),
later_same_name as (  -- exact-name characters of the job's user created within the link window
    select r.id as job_id, array_agg(c.id) as ids
    from request r join characters c on c.user_id = r.user_id and c.name = r.character_name
    where c.created_at between r.created_at and r.created_at + %(link_window)s
    group by r.id
),
judged as (
    select r.id, r.status, r.created_at, r.metadata, r.prefix, r.user_id, r.character_name,
           fa.job_id is not null as has_asset, fa.path, coalesce(fa.is_url, false) as is_url,
           case when fa.path <> '' and not fa.is_url
                then case when fa.path like 'workspace-temp/%%' then substr(fa.path, 16) else fa.path end end as recorded,
           t.main, t.names, rb.visible_rows, rb.visible_key, rb.visible_has_object,
           coalesce(rb.any_row_object, false) or cp.any_copy is not null as saved_copy,
           f.job_id is not null as foreign_asset,
           case when r.character_id is not null then
                    case when byid.user_id = r.user_id and (rb.bound_id is null or rb.bound_id = byid.id) then byid.id end
                when coalesce(rb.bound_id, cp.older_id) is not null
                     and not exists (select 1 from unnest(ls.ids) x where x <> coalesce(rb.bound_id, cp.older_id))
                    then coalesce(rb.bound_id, cp.older_id)
           end as resolved_id
    from request r
    left join first_asset fa on fa.job_id = r.id
    left join foreign_asset f on f.job_id = r.id
    left join temp_objects t on t.job_id = r.id
    left join rows_by_job rb on rb.job_id = r.id
    left join copied cp on cp.job_id = r.id
    left join later_same_name ls on ls.job_id = r.id
    left join characters byid on byid.id = r.character_id
),
output as (
    select j.*,
           case when j.recorded = any(j.names) then j.recorded else j.main end as source_key
    from judged j
),
verdict as (
    select o.*, (o.source_key is not null or o.saved_copy) as has_output,
           c.image_url, btrim(coalesce(c.image_url, ''), E' \t\n\r') as current, c.created_at as character_created_at
    from output o left join characters c on c.id = o.resolved_id
),
url as (  -- the parts of a URL image that the replaceable-image rule reads (urlsplit's path)
    select v.id,
           substring(v.current from '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*([^?#]*)') as path,
           substring(v.current from '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)') like '%%@%%' as userinfo,
           case when jsonb_typeof(v.metadata->'original_fal_url') = 'string'
                 and lower(btrim(v.metadata->>'original_fal_url', E' \t\n\r')) ~ '^https?://'
                then btrim(v.metadata->>'original_fal_url', E' \t\n\r') end as recorded_url
    from verdict v
    where lower(v.current) like 'http://%%' or lower(v.current) like 'https://%%'
),
storage_url as (  -- rule 6: a Storage URL of an object in workspace-temp, and its key
    select u.*, substring(u.path from
               '^/storage/v1/(?:object|render/image)/(?:sign|public|authenticated)/workspace-temp/(.+)$') as key
    from url u
),
saved as (
    select v.id,
           not v.foreign_asset and v.has_output and v.resolved_id is not null
           and v.visible_rows = 1 and v.visible_has_object
           and (v.image_url = 'user-library/' || v.visible_key
                or not (  -- may charfix replace the character's image? (docs/diagnosis.md, "The replaceable-image rule")
                    v.current in ('', 'workspace-temp/', 'workspace-temp')                      -- 1
                    or left(v.current, 15 + 74) = 'workspace-temp/' || v.prefix                 -- 2
                    or (v.recorded is not null and v.current = 'workspace-temp/' || v.recorded) -- 3
                    or (u.id is not null and (                                                  -- 4: URLs only
                        (v.is_url and v.current = v.path)                                       -- 5
                        or (not coalesce(u.userinfo, false) and u.key is not null and (         -- 6
                            u.key in (v.recorded, v.source_key)
                            or (left(u.key, 74) = v.prefix and substr(u.key, 75) ~ '^[0-9]{10,16}\.[A-Za-z0-9]{1,5}$')))
                        or case when u.recorded_url is not null then v.current = u.recorded_url  -- 7
                                else v.character_created_at between v.created_at and v.created_at + %(link_window)s
                                     and u.path is not null and u.path not like '%%/storage/v1/%%'  -- 8
                                     and not exists (  -- a later draft for the same name sets the image
                                         select 1 from request d
                                         where d.user_id = v.user_id and d.character_name = v.character_name
                                           and d.id <> v.id and d.created_at > v.created_at
                                           and d.created_at <= v.character_created_at)
                           end))
                )) as is_saved
    from verdict v left join storage_url u on u.id = v.id
)
select v.id
from verdict v join saved s on s.id = v.id
where case
    when v.status in ('queued', 'processing') then v.has_output or v.has_asset or v.created_at < %(now)s - %(stuck_after)s
    when v.status in ('failed', 'cancelled') then v.has_output or v.is_url
    when v.status <> 'completed' then true
    else not coalesce(s.is_saved, false)
end
