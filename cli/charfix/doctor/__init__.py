"""The checks of `charfix doctor`: configuration, Postgres, and the Supabase APIs."""
