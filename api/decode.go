package api

import (
	"bytes"
	"encoding/json"
	"fmt"

	"sigs.k8s.io/yaml"
)

// DecodeJob reads a job file in YAML or JSON (JSON is YAML), rejecting
// unknown fields so that a misspelt field is an error rather than silently
// ignored. It applies defaults but does not validate.
func DecodeJob(data []byte) (*Job, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("job file is neither valid YAML nor JSON: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil, fmt.Errorf("job file is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var j Job
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("job file: %w", err)
	}
	j.Defaults()
	return &j, nil
}
