//! `anime-pipe stats --contact-sheet PATH` (being implemented).
