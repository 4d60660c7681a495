package customstore_test

import (
	"context"
	"database/sql"
	"log"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/examples/customstore"
)

func Example() {
	ctx := context.Background()
	// parseTime=true makes the driver read DATETIME columns as time.Time.
	db, err := sql.Open("mysql", "app:secret@tcp(127.0.0.1:3306)/app?parseTime=true")
	if err != nil {
		log.Fatal(err)
	}
	store := customstore.New(db)
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	// Expired rows are invisible at once; PurgeExpired frees their space.
	go func() {
		for range time.Tick(10 * time.Minute) {
			if _, err := store.PurgeExpired(ctx); err != nil {
				log.Printf("purging expired sessions: %v", err)
			}
		}
	}()

	var _ atauth.Store = store // pass it as atauth.Config.Store
}
