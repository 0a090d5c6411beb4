-- The application's four tables as charfix meets them in production: more columns than charfix
-- uses, the same checks, defaults and triggers, no index on jobs.metadata (docs/domain.md section 6).
-- Used by the demo and the tests. user_library has the newer shape here (since 2026-03); the tests'
-- older-shape template drops the newer columns and the portrait-count trigger (tests/conftest.py).

create table if not exists jobs (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null,
    job_type text not null,
    status text default 'queued'
        check (status in ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    error_message text,
    metadata jsonb,
    quality text,
    format text,
    model_type text,
    attempts integer default 0,
    created_at timestamptz default now(),
    started_at timestamptz,
    completed_at timestamptz,
    destination text default 'library' check (destination in ('library', 'workspace')),
    moderation_status text default 'pending',
    reviewed_at timestamptz,
    project_id uuid
);
create index if not exists idx_jobs_status_created on jobs (status, created_at)
    where status in ('processing', 'queued');

-- The app's BEFORE UPDATE trigger on jobs only logs; it is here so that every write meets it.
create or replace function log_job_update() returns trigger language plpgsql as $$
begin
    raise log 'job % updated: % -> %', new.id, old.status, new.status;
    return new;
end $$;
drop trigger if exists jobs_log_update on jobs;
create trigger jobs_log_update before update on jobs
    for each row execute function log_job_update();

create or replace function validate_moderation_status() returns trigger language plpgsql as $$
begin
    if new.moderation_status is not null
       and new.moderation_status not in ('pending', 'approved', 'rejected', 'flagged') then
        raise exception 'invalid moderation_status: %', new.moderation_status;
    end if;
    return new;
end $$;
drop trigger if exists jobs_moderation_status on jobs;
create trigger jobs_moderation_status before insert or update on jobs
    for each row execute function validate_moderation_status();

create table if not exists workspace_assets (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null,
    job_id uuid not null,
    asset_index integer not null default 0,
    asset_type text not null check (asset_type in ('image', 'video')),
    temp_storage_path text not null,
    file_size_bytes bigint not null,
    mime_type text not null,
    duration_seconds numeric,
    thumbnail_path text,
    generation_seed bigint not null,
    original_prompt text not null,
    model_used text not null,
    generation_settings jsonb default '{}',
    width integer,
    height integer,
    created_at timestamptz default now(),  -- nullable in the app's schema
    expires_at timestamptz default (now() + interval '7 days'),
    unique (job_id, asset_index)
);
create index if not exists idx_workspace_assets_user on workspace_assets (user_id, created_at desc);

create table if not exists characters (
    id uuid primary key default gen_random_uuid(),
    user_id uuid,
    name text not null,
    description text not null,
    traits text,
    appearance_tags text[],
    image_url text,
    reference_image_url text,
    seed_locked integer,
    persona text,
    system_prompt text,
    voice_tone text,
    mood text,
    interaction_count integer default 0,
    likes_count integer default 0,
    is_public boolean default true,
    content_rating text default 'sfw',
    portrait_count integer not null default 0,
    created_at timestamptz default now(),
    updated_at timestamptz default now()
);
create index if not exists idx_characters_user on characters (user_id);

create or replace function bump_updated_at() returns trigger language plpgsql as $$
begin
    new.updated_at = now();
    return new;
end $$;
drop trigger if exists characters_updated_at on characters;
create trigger characters_updated_at before update on characters
    for each row execute function bump_updated_at();

create table if not exists user_library (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null,
    asset_type text not null check (asset_type in ('image', 'video')),
    storage_path text not null,
    file_size_bytes bigint not null,
    mime_type text not null,
    thumbnail_path text,
    duration_seconds numeric,
    original_prompt text not null,
    model_used text not null,
    generation_seed bigint,
    width integer,
    height integer,
    custom_title text,
    tags text[] default '{}',
    is_favorite boolean default false,
    visibility text default 'private',
    collection_id uuid,
    content_category text default 'general',
    roleplay_metadata jsonb default '{}',
    character_id uuid references characters (id) on delete cascade,
    output_type text,
    label text,
    is_primary boolean not null default false,
    is_pinned boolean not null default false,
    sort_order integer not null default 0,
    generation_metadata jsonb not null default '{}',
    created_at timestamptz default now(),
    updated_at timestamptz default now()
);
create index if not exists idx_user_library_user on user_library (user_id, created_at desc);

-- The app keeps characters.portrait_count for rows with output_type = 'portrait'. Every such write
-- updates the character, so its BEFORE UPDATE trigger moves updated_at: updated_at is no evidence
-- that a person changed the character (docs/domain.md section 6).
create or replace function sync_portrait_count() returns trigger language plpgsql as $$
begin
    if tg_op in ('UPDATE', 'DELETE') and old.character_id is not null and old.output_type = 'portrait' then
        update characters set portrait_count = (
            select count(*) from user_library where character_id = old.character_id and output_type = 'portrait')
        where id = old.character_id;
    end if;
    if tg_op in ('INSERT', 'UPDATE') and new.character_id is not null and new.output_type = 'portrait' then
        update characters set portrait_count = (
            select count(*) from user_library where character_id = new.character_id and output_type = 'portrait')
        where id = new.character_id;
    end if;
    return null;
end $$;
drop trigger if exists user_library_portrait_count on user_library;
create trigger user_library_portrait_count after insert or delete or update of output_type, character_id
    on user_library for each row execute function sync_portrait_count();

-- Supabase Auth's users, reduced to what charfix reads (emails, for `--user EMAIL`). On a real
-- project the table exists with many more columns; created here only when it is missing.
create schema if not exists auth;
create table if not exists auth.users (
    id uuid primary key,
    email text,
    created_at timestamptz default now()
);
