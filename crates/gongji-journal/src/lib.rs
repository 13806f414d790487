//! gongji-journal
